"""The suite's own skip reasons name no absolute path of the machine that runs it."""
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def test_missing_fixtures_skip_reason_has_no_absolute_path(tmp_path):
    checkout = tmp_path / 'checkout'
    (checkout / 'tests').mkdir(parents=True)
    shutil.copy(os.path.join(HERE, 'conftest.py'), checkout / 'tests' / 'conftest.py')
    (checkout / 'tests' / 'test_uses_fixtures.py').write_text('def test_it(fixtures_dir):\n    pass\n')
    env = {k: v for k, v in os.environ.items() if k != 'SG3C_FIXTURES'}
    for extra in ({}, {'SG3C_FIXTURES': str(tmp_path / 'nowhere')}):
        r = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-rs', '-p', 'no:cacheprovider', 'tests'],
                           cwd=checkout, env={**env, **extra}, capture_output=True, text=True, timeout=300)
        skipped = [line for line in r.stdout.splitlines() if line.startswith('SKIPPED')]
        assert len(skipped) == 1 and 'fixtures not found' in skipped[0], r.stdout
        reason = skipped[0].split(':', 2)[-1]
        assert not [word for word in reason.split() if os.path.isabs(word.strip('()'))], reason


def test_nvidia_reference_skip_names_the_variable_to_set_not_a_path():
    # It named the folder where one developer's machine keeps NVIDIA's code, instead of the variable to set.
    env = {k: v for k, v in os.environ.items() if k not in ('SG3C_NVIDIA_REPO', 'SG3C_CUDA_PYTHON')}
    r = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-rs', '-p', 'no:cacheprovider', 'tests/test_augment.py',
                        '-k', 'nvidia'], cwd=os.path.dirname(HERE), env=env, capture_output=True, text=True, timeout=600)
    skipped = [line for line in r.stdout.splitlines() if line.startswith('SKIPPED')]
    assert skipped, r.stdout
    for line in skipped:
        reason = line.split(':', 2)[-1]
        assert not [w for w in reason.split() if os.path.isabs(w.strip('()\'",'))], line
        assert 'SG3C_NVIDIA_REPO' in reason, line
