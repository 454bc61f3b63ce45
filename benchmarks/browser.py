"""Driving app.py in a real headless Chromium (Selenium + Debian's chromium/chromium-driver): start the app
on a free localhost port, open the page, and the few page actions the tests, the screenshot script and the
latency benchmark share."""
from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Optional

import numpy as np
import PIL.Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHROMIUM_NAMES = ('chromium', 'chromium-browser', 'google-chrome', 'google-chrome-stable')


def missing() -> Optional[str]:
    """Why a browser test cannot run here, or None."""
    for module in ('selenium', 'gradio'):
        try:
            __import__(module)
        except ImportError:
            return f'{module} is not installed (pip install -r requirements.txt; tests also need selenium)'
    if not any(shutil.which(n) for n in CHROMIUM_NAMES) or not shutil.which('chromedriver'):
        return 'Chromium and chromedriver are not installed (apt-get install chromium chromium-driver)'
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


class App:
    """app.py running in a subprocess on a free port; stopped (and its log kept) by `stop`."""

    def __init__(self, *args: str, timeout: float = 120, env: Optional[dict] = None):
        self.port = free_port()
        self.url = f'http://127.0.0.1:{self.port}/'
        # One thread unless told otherwise: the tests share a small machine with the rest of the suite.
        env = {**os.environ, 'GRADIO_ANALYTICS_ENABLED': 'False',
               'OMP_NUM_THREADS': os.environ.get('OMP_NUM_THREADS', '1'), **(env or {})}
        self.log = tempfile.TemporaryFile()   # a file, not a pipe: a pipe nobody reads would block a chatty app
        self.proc = subprocess.Popen([sys.executable, os.path.join(REPO, 'app.py'), f'--port={self.port}', *args],
                                     cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f'app.py exited: {self.output()[-2000:]}')
            try:
                urllib.request.urlopen(self.url, timeout=2).read()
                return
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f'app.py did not answer on {self.url} within {timeout:.0f} s')

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors='replace')

    def stop(self) -> str:
        """Stop the app; returns everything it printed."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.output()


def chrome(width: int = 1400, height: int = 1300):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = next(shutil.which(n) for n in CHROMIUM_NAMES if shutil.which(n))
    # No sandbox: CI runs as root. The rest keeps Chromium from calling Google's services.
    for arg in ('--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', f'--window-size={width},{height}',
                '--disable-background-networking', '--disable-component-update', '--no-first-run', '--disable-sync',
                '--disable-default-apps', '--disable-extensions'):
        options.add_argument(arg)
    options.set_capability('goog:loggingPrefs', {'performance': 'ALL'})
    return webdriver.Chrome(service=Service(shutil.which('chromedriver')), options=options)


def requested_hosts(driver) -> set[str]:
    """Hosts of every http(s)/ws request the page made so far (from Chromium's performance log)."""
    import json
    import urllib.parse
    hosts = set()
    for entry in driver.get_log('performance'):
        message = json.loads(entry['message'])['message']
        if message['method'] in ('Network.requestWillBeSent', 'Network.webSocketCreated'):
            url = message['params'].get('request', {}).get('url') or message['params'].get('url', '')
            if url.split(':')[0] in ('http', 'https', 'ws', 'wss'):
                hosts.add(urllib.parse.urlsplit(url).hostname)
    return hosts


def wait_for(condition, timeout: float = 30, what: str = 'condition'):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise TimeoutError(f'timed out after {timeout:.0f} s waiting for {what}')


def by_id(driver, elem_id: str, css: str = ''):
    from selenium.webdriver.common.by import By
    return driver.find_element(By.CSS_SELECTOR, f'#{elem_id} {css}'.strip())


def image_src(driver, elem_id: str) -> Optional[str]:
    from selenium.webdriver.common.by import By
    found = driver.find_elements(By.CSS_SELECTOR, f'#{elem_id} img')
    return found[0].get_attribute('src') if found else None


def fetch_image(src: str) -> np.ndarray:
    with urllib.request.urlopen(src, timeout=10) as r:
        return np.asarray(PIL.Image.open(io.BytesIO(r.read())))


def new_image(driver, elem_id: str, old: Optional[str], timeout: float = 30) -> np.ndarray:
    """Wait until the image in `elem_id` is replaced, and return its pixels."""
    src = wait_for(lambda: (image_src(driver, elem_id) or None) if image_src(driver, elem_id) != old else None,
                   timeout, f'a new image in #{elem_id}')
    return fetch_image(src)


def open_tab(driver, name: str) -> None:
    from selenium.webdriver.common.by import By
    driver.find_element(By.XPATH, f"//button[@role='tab' and normalize-space()='{name}']").click()
    time.sleep(0.3)


def set_number(driver, elem_id: str, value) -> None:
    """Type into a gr.Number (or a slider's number box)."""
    from selenium.webdriver.common.keys import Keys
    box = by_id(driver, elem_id, 'input[type=number]')
    box.send_keys(Keys.CONTROL, 'a')
    box.send_keys(str(value))


def text_of(driver, elem_id: str) -> str:
    return by_id(driver, elem_id).text
