"""app.py end to end in a real headless Chromium: generate a seed, move a slider, mix two seeds, upload a photo
(and a bad one), and check every image against what the library computes for the same request.

Skipped with the reason when Selenium, gradio, Chromium or chromedriver is missing (`.ci/run` installs them).
With SG3C_APP_SCREENSHOTS=DIR the run also saves a screenshot of each tab there (benchmarks/app_screenshots.py);
SG3C_APP_NETWORK / SG3C_APP_DIRECTIONS run it on another network (default: a tiny random conditional StyleGAN2)."""
import io
import os
import sys
import time
import urllib.request

import numpy as np
import PIL.Image
import pytest

from app import studio as S
from editing.directions import save_directions
from editing.discovery import ganspace
from networks.snapshot import save_snapshot

from helpers.networks import tiny_networks

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.append(os.path.join(REPO, 'benchmarks'))   # last: its inversion.py and metrics.py would shadow the packages
import browser  # noqa: E402  (benchmarks/browser.py: the latency benchmark drives the app with it too)

pytestmark = pytest.mark.skipif(browser.missing() is not None, reason=browser.missing() or '')
SHOTS = os.environ.get('SG3C_APP_SCREENSHOTS')


@pytest.fixture(scope='module')
def network(tmp_path_factory):
    if os.environ.get('SG3C_APP_NETWORK'):
        return os.environ['SG3C_APP_NETWORK'], os.environ.get('SG3C_APP_DIRECTIONS')
    root = tmp_path_factory.mktemp('app')
    data = tiny_networks('stylegan2', c_dim=3)   # conditional, as the pretrained garment model the app opens
    save_snapshot(root / 'tiny.pkl', data)
    d = ganspace(data['G_ema'], num_samples=200, num_components=3).renamed({'pc0': 'darker', 'pc1': 'sleeve'})
    save_directions(root / 'dirs.npz', d)
    return str(root / 'tiny.pkl'), str(root / 'dirs.npz')


@pytest.fixture(scope='module')
def studio(network):
    return S.Studio.load(network[0], network[1], w_avg_samples=S.W_AVG_SAMPLES)


@pytest.fixture(scope='module')
def page(network):
    args = [f'--network={network[0]}', '--device=cpu', '--perceptual=none']
    if network[1]:
        args.append(f'--directions={network[1]}')
    app = browser.App(*args)
    driver = browser.chrome()
    try:
        driver.get(app.url)
        browser.wait_for(lambda: browser.image_src(driver, 'current-image'), 60, 'the first garment')
        driver.sg3c_app = app   # for the tests that read the server's log
        yield driver
    finally:
        driver.quit()
        log = app.stop()
        assert 'Traceback' not in log, log[-3000:]


def shot(driver, name):
    if SHOTS:
        os.makedirs(SHOTS, exist_ok=True)
        time.sleep(0.5)
        driver.save_screenshot(os.path.join(SHOTS, f'{name}.png'))


def seed(studio, value):
    """The garment the page shows for a seed: truncation 0.7 and, on a conditional network, the first class."""
    return studio.seed_garment(value, 0.7, 0 if studio.num_classes else None)


def expected(studio, garment, **strengths):
    s = S.Session()
    studio.set_garment(s, garment)
    for name, value in strengths.items():
        studio.set_strength(s, name, value)
    return studio.render(s)


def test_generate_a_seed(page, studio):
    old = browser.image_src(page, 'current-image')
    browser.set_number(page, 'seed', 5)
    browser.by_id(page, 'generate-btn').click()
    got = browser.new_image(page, 'current-image', old)
    assert np.array_equal(got, expected(studio, seed(studio, 5)))
    assert 'seed 5' in browser.text_of(page, 'current-label')
    assert '--seeds=5 --trunc=0.7' in browser.text_of(page, 'commands')
    browser.by_id(page, 'grid-btn').click()
    browser.wait_for(lambda: len(page.find_elements('css selector', '#gallery img')) == 8, 30, 'the grid')
    shot(page, 'generate')


def test_move_a_slider_and_see_the_image_change(page, studio):
    from selenium.webdriver.common.keys import Keys
    browser.open_tab(page, 'Edit')
    old = browser.image_src(page, 'current-image')
    knob = browser.by_id(page, 'slider-0', 'input[type=range]')
    for _ in range(10):                 # 10 steps of 0.05
        knob.send_keys(Keys.ARROW_RIGHT)
    got = browser.new_image(page, 'current-image', old)
    time.sleep(1.0)                     # the last key's render replaces earlier ones (trigger mode always_last)
    got = browser.fetch_image(browser.image_src(page, 'current-image'))
    value = float(browser.by_id(page, 'slider-0', 'input[type=number]').get_attribute('value'))
    assert value == pytest.approx(0.5)
    name = studio.directions.names[0]
    assert np.array_equal(got, expected(studio, seed(studio, 5), **{name: value}))
    assert not np.array_equal(got, expected(studio, seed(studio, 5)))
    assert f'--edit={name}:0.5' in browser.text_of(page, 'commands')
    shot(page, 'edit')

    browser.by_id(page, 'export-btn').click()                  # the downloads hold the edited latent
    links = browser.wait_for(lambda: {os.path.basename(a.get_attribute('href').split('?')[0]): a.get_attribute('href')
                                      for a in page.find_elements('css selector', '#downloads a[href]')}, 30, 'downloads')
    assert set(links) == {'garment.png', 'garment.npz'}
    with urllib.request.urlopen(links['garment.npz'], timeout=10) as r:
        w = np.load(io.BytesIO(r.read()), allow_pickle=False)['w']
    s = S.Session()
    studio.set_garment(s, seed(studio, 5))
    studio.set_strength(s, name, value)
    assert np.array_equal(w, studio.current_ws(s).numpy())


def test_the_grid_shows_whole_garments_with_no_caption_over_them(page, studio):
    # Each garment was zoomed and cropped (object-fit: cover) and its "seed N" caption covered the hem.
    browser.open_tab(page, 'Generate')
    browser.set_number(page, 'seed', 5)
    browser.by_id(page, 'grid-btn').click()
    browser.wait_for(lambda: len(page.find_elements('css selector', '#gallery img')) == 8, 30, 'the grid')
    fits = {page.execute_script('return getComputedStyle(arguments[0]).objectFit', img)
            for img in page.find_elements('css selector', '#gallery img')}
    assert fits == {'contain'}, fits
    assert not page.find_elements('css selector', '#gallery .caption-label')
    assert 'seed 5 to 12' in browser.text_of(page, 'gallery')


def test_a_typed_strength_past_the_range_shows_the_one_used(page, studio):
    # Typing 99 left 99 in the box while the image used 3, with a traceback in the server's log (the
    # fixture checks the log at the end).
    from selenium.webdriver.common.keys import Keys
    browser.open_tab(page, 'Generate')
    old = browser.image_src(page, 'current-image')
    browser.set_number(page, 'seed', 5)
    browser.by_id(page, 'generate-btn').click()
    browser.new_image(page, 'current-image', old)
    browser.open_tab(page, 'Edit')
    old = browser.image_src(page, 'current-image')
    box = browser.by_id(page, 'slider-0', 'input[type=number]')
    box.send_keys(Keys.CONTROL, 'a')
    box.send_keys('99', Keys.ENTER)
    got = browser.new_image(page, 'current-image', old)
    browser.wait_for(lambda: box.get_attribute('value') == '3', 30, 'the box to show 3')
    assert np.array_equal(got, expected(studio, seed(studio, 5), **{studio.directions.names[0]: 3}))
    browser.wait_for(lambda: 'strengths lie in +-3: 99 is 3' in browser.text_of(page, 'edit-status'), 10, 'the note')


def test_mix_two_seeds(page, studio):
    browser.open_tab(page, 'Mix')
    browser.set_number(page, 'mix-a', 3)
    browser.set_number(page, 'mix-b', 8)
    browser.by_id(page, 'mix-btn').click()
    got = browser.new_image(page, 'mix-result', None)
    a, b = seed(studio, 3), seed(studio, 8)
    assert np.array_equal(got, expected(studio, studio.mix(a, b, studio.mix_rows('fine'))))
    commands = browser.text_of(page, 'commands')
    assert 'style_mixing.py' in commands and '--rows=3 --cols=8' in commands
    shot(page, 'mix')

    # The result's label is not covered by buttons (it was cut off by download and share).
    label = page.find_element('css selector', '#mix-result [data-testid="block-label"]')
    buttons = [b for b in page.find_elements('css selector', '#mix-result button') if b.is_displayed() and b.rect['width'] < 60]
    right = label.rect['x'] + label.rect['width']
    assert label.text == "A in B's style" and all(b.rect['x'] >= right for b in buttons), (label.rect, [b.rect for b in buttons])

    # The custom cut moves with the keyboard too (it remixed on mouse release only).
    from selenium.webdriver.common.keys import Keys
    old = browser.image_src(page, 'mix-result')
    knob = browser.by_id(page, 'mix-cut', 'input[type=range]')
    cut = int(float(knob.get_attribute('value')))
    knob.send_keys(Keys.ARROW_LEFT)
    got = browser.new_image(page, 'mix-result', old)
    time.sleep(1.0)
    got = browser.fetch_image(browser.image_src(page, 'mix-result'))
    assert np.array_equal(got, expected(studio, studio.mix(a, b, studio.mix_rows(cut=cut - 1))))
    assert page.find_element('css selector', '#mix-preset input[value="custom"]').is_selected()

    # Every preset mixes, 'coarse' too: its rows start at 0, below the custom cut slider's minimum of 1.
    for preset in ('coarse', 'middle'):
        old = browser.image_src(page, 'mix-result')
        page.find_element('xpath', f"//*[@id='mix-preset']//label[normalize-space()='{preset}']").click()
        got = browser.new_image(page, 'mix-result', old)
        assert np.array_equal(got, expected(studio, studio.mix(a, b, studio.mix_rows(preset)))), preset
        assert not page.find_elements('xpath', "//*[normalize-space()='Error']"), preset
        assert browser.text_of(page, 'mix-status') == '', preset


def test_upload_a_photo_and_get_a_reconstruction(page, studio, tmp_path):
    browser.open_tab(page, 'Invert')
    (tmp_path / 'notes.png').write_text('this is not an image')
    browser.by_id(page, 'photo', 'input[type=file]').send_keys(str(tmp_path / 'notes.png'))
    browser.wait_for(lambda: 'notes.png: not an image' in browser.text_of(page, 'invert-status'), 30, 'the refusal')
    assert 'Traceback' not in page.page_source

    r = studio.resolution
    photo = np.full([r + 8, r, 3], 235, np.uint8)
    photo[r // 4:3 * r // 4 + 8, r // 4:3 * r // 4] = (40, 70, 160)
    PIL.Image.fromarray(photo).save(tmp_path / 'shirt.png')
    for clear in page.find_elements('css selector', '#photo button[aria-label="Clear"]'):   # drop the bad file
        clear.click()
    browser.by_id(page, 'photo', 'input[type=file]').send_keys(str(tmp_path / 'shirt.png'))
    browser.wait_for(lambda: 'shirt.png' in browser.text_of(page, 'invert-status'), 30, 'the upload')
    page.find_element('xpath', "//*[@id='method']//label[normalize-space()='project']").click()
    browser.set_number(page, 'steps', 15)
    old = browser.image_src(page, 'current-image')
    browser.by_id(page, 'invert-btn').click()
    status = browser.wait_for(lambda: (t := browser.text_of(page, 'invert-status')) and ('done' in t or 'stopped' in t) and t,
                              90, 'the inversion')
    assert 'done' in status, status
    compare = browser.new_image(page, 'compare', None)
    assert compare.shape[:2] == (r, 2 * r)
    current = browser.new_image(page, 'current-image', old)
    assert np.array_equal(current, compare[:, r:])               # the reconstruction is the current garment
    target = compare[:, :r].astype(int)
    blank = np.abs(target - expected(studio, seed(studio, 0)).astype(int)).mean()
    assert np.abs(target - current.astype(int)).mean() < blank   # nearer the photo than an unrelated garment
    assert 'invert.py --method=project' in browser.text_of(page, 'commands')
    shot(page, 'invert')


def test_a_second_tab_has_its_own_state(page, studio):
    first, url = page.current_window_handle, page.current_url
    page.switch_to.new_window('tab')
    try:
        page.get(url)
        got = browser.new_image(page, 'current-image', None, timeout=60)
        assert np.array_equal(got, expected(studio, seed(studio, 0)))   # the page's fresh start
        assert 'seed 0' in browser.text_of(page, 'current-label')
    finally:
        page.close()
        page.switch_to.window(first)
    assert 'photo shirt' in browser.text_of(page, 'current-label')                  # the first tab kept its garment


def test_closing_the_page_stops_its_inversion_within_seconds(page, studio, tmp_path):
    """Issue 32 (and docs/app.md): a page that starts an inversion and goes away takes its job with it."""
    first, url = page.current_window_handle, page.current_url
    r = studio.resolution
    PIL.Image.fromarray(np.full([r, r, 3], 120, np.uint8)).save(tmp_path / 'gone.png')
    page.switch_to.new_window('tab')
    try:
        page.get(url)
        browser.wait_for(lambda: browser.image_src(page, 'current-image'), 60, 'the first garment')
        browser.open_tab(page, 'Invert')
        browser.by_id(page, 'photo', 'input[type=file]').send_keys(str(tmp_path / 'gone.png'))
        browser.wait_for(lambda: 'gone.png' in browser.text_of(page, 'invert-status'), 30, 'the upload')
        browser.set_number(page, 'steps', S.MAX_STEPS)
        browser.by_id(page, 'invert-btn').click()
        browser.wait_for(lambda: 'step' in browser.text_of(page, 'invert-status'), 60, 'the inversion to start')
    finally:
        page.close()
        page.switch_to.window(first)
    closed = time.time()
    line = browser.wait_for(lambda: next((x for x in page.sg3c_app.output().splitlines()
                                          if x.startswith('inversion of gone ')), None), 15, 'the job to end')
    assert 'stopped: cancelled at step' in line, line
    print(f'\n{line} ({time.time() - closed:.1f} s after the page closed)')
    busy = server_cpu_seconds(page.sg3c_app.proc.pid)   # and the server is idle again: no thread works on
    time.sleep(2)
    assert server_cpu_seconds(page.sg3c_app.proc.pid) - busy < 0.3


def server_cpu_seconds(pid: int) -> float:
    with open(f'/proc/{pid}/stat') as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')   # utime + stime


def test_the_page_only_talks_to_localhost(page):
    assert browser.requested_hosts(page) <= {'127.0.0.1', 'localhost'}
