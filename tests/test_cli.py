"""The shared script entry point: expected failures become one line and exit code 1."""
import pathlib
import subprocess
import sys
import textwrap

import click
import pytest

from torch_utils.cli import FiniteFloat, UserError, describe, parse_finite

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.parametrize('text', ['nan', 'inf', '-inf', 'NaN'])
def test_finite_float_refuses_non_finite(text):
    with pytest.raises(click.BadParameter, match='not a finite number'):
        FiniteFloat().convert(text, None, None)
    with pytest.raises(ValueError, match='not a finite number'):
        parse_finite(text, '--trunc')


def test_finite_float_keeps_range_and_value():
    assert FiniteFloat(min=0).convert('0.5', None, None) == 0.5
    with pytest.raises(click.BadParameter):
        FiniteFloat(min=0).convert('-1', None, None)


def test_describe_names_the_file_of_an_os_error():
    assert describe(FileNotFoundError(2, 'No such file or directory', 'x.pkl')) == 'x.pkl: No such file or directory'
    assert describe(UserError('a.pkl: not a snapshot\n')) == 'a.pkl: not a snapshot'


SCRIPT = textwrap.dedent('''
    import click
    from torch_utils.cli import UserError, run

    @click.command()
    @click.option('--fail', type=click.Choice(['user', 'os', 'bug', 'none']))
    def main(fail):
        if fail == 'user':
            raise UserError('in.pkl: not a snapshot')
        if fail == 'os':
            open('/nonexistent-dir/x.txt', 'w')
        if fail == 'bug':
            raise ZeroDivisionError('bug')
        print('ok')

    run(main)
''')


@pytest.mark.parametrize('fail,rc,line', [('user', 1, 'error: in.pkl: not a snapshot'),
                                          ('os', 1, 'error: /nonexistent-dir/x.txt: No such file or directory'),
                                          ('none', 0, '')])
def test_run_turns_expected_failures_into_one_line(tmp_path, fail, rc, line):
    script = tmp_path / 's.py'
    script.write_text(SCRIPT)
    p = subprocess.run([sys.executable, str(script), f'--fail={fail}'], capture_output=True, text=True, cwd=REPO,
                       env={'PYTHONPATH': str(REPO), 'PATH': ''})
    assert p.returncode == rc
    assert p.stderr.strip() == line
    assert 'Traceback' not in p.stderr


def test_run_keeps_tracebacks_for_bugs_and_with_debug(tmp_path):
    script = tmp_path / 's.py'
    script.write_text(SCRIPT)
    env = {'PYTHONPATH': str(REPO), 'PATH': ''}
    bug = subprocess.run([sys.executable, str(script), '--fail=bug'], capture_output=True, text=True, env=env)
    assert bug.returncode == 1 and 'ZeroDivisionError' in bug.stderr and 'Traceback' in bug.stderr
    dbg = subprocess.run([sys.executable, str(script), '--debug', '--fail=user'], capture_output=True, text=True, env=env)
    assert dbg.returncode == 1 and 'Traceback' in dbg.stderr and dbg.stderr.rstrip().endswith('error: in.pkl: not a snapshot')


def test_help_names_the_short_model_names_and_not_the_alias_spellings():
    # gen_images.py and invert.py --help did not mention short names; invert.py --help listed --checkpoint_path,
    # --input_image, ... beside the options they spell.
    from click.testing import CliRunner
    import gen_images
    import invert
    for script in (gen_images, invert):
        text = ' '.join(CliRunner().invoke(script.main, ['--help']).output.split())
        assert 'short name of a model in pretrained/ (garments)' in text and 'RUN_DIR:best' in text, text
    options = CliRunner().invoke(invert.main, ['--help']).output.split('Options:')[1]
    for alias in ('--checkpoint_path', '--checkpoint-path', '--input_image', '--input-image', '--output_path',
                  '--output-path', '--num-steps'):
        assert alias not in options, alias


def test_the_readme_and_train_help_show_the_same_cpu_command():
    import os
    import re
    from click.testing import CliRunner
    import train
    readme = open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'README.md')).read()
    command = re.search(r'python train\.py --outdir=runs --cfg=stylegan2 --data=synthetic:garments[^\n`]*', readme).group(0)
    assert command.rstrip() in CliRunner().invoke(train.main, ['--help']).output
