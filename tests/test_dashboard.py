"""The dashboard in a real headless Chromium (Debian's ``chromium`` and ``chromium-driver``,
driven by selenium): a server holding the Python FAQ (answers embedded by all-MiniLM-L6-v2)
answers a question typed into the search page with that question's answer on top, "more like
this" finds an item first among its own neighbours, and the calibration plot is drawn. A
screenshot is saved under ``tests/artifacts/``."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from conftest import REPO, Server, in_ci

import polyvec as pv

ARTIFACTS = REPO / "tests" / "artifacts"


def _driver() -> Any:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        chromium = None
    if chromium is None or driver is None:
        msg = ("needs Debian's chromium and chromium-driver (apt-get install chromium "
               "chromium-driver) and selenium (the [test] extra)")
        if in_ci():
            pytest.fail(f"{msg}; CI=true requires them", pytrace=False)
        pytest.skip(msg)
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1000",
                "--disable-dev-shm-usage"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(driver), options=opts)


@pytest.fixture(scope="module")
def faq_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Any]]:
    from polyvec.embed import minilm
    from polyvec.eval.datasets import load_python_faq

    ds = load_python_faq()
    folder = tmp_path_factory.mktemp("faq") / "db"
    db = pv.connect(folder)
    emb = minilm()
    faq = db.create_collection("faq", {"dense": pv.Dense(384)}, indexed=["page"],
                               embedders={"dense": emb})
    faq.add_texts([d["text"] for d in ds.corpus], [d["id"] for d in ds.corpus], ds.payloads)
    # the questions whose own answer an embedded search ranks first (MiniLM finds most)
    top = faq.search_text([q["text"] for q in ds.queries], k=1).ids[:, 0]
    found = [q for q, hit in zip(ds.queries, top, strict=True) if hit == q["id"]]
    assert len(found) > len(ds.queries) // 3
    rng = np.random.default_rng(0)
    big = db.create_collection("indexed", {"v": pv.Dense(16)})
    big.add(list(range(3000)), {"v": rng.standard_normal((3000, 16)).astype(np.float32)})
    big.create_index("v", "HNSW16,SQ8,Refine")
    db.close()
    reports = folder / "reports"  # what `polyvec eval --out <db>/reports` leaves there
    reports.mkdir()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([1, 5, 10], [0.5, 0.8, 0.9])
    ax.set_title("faq: recall@k")
    fig.savefig(reports / "faq-recall.png")
    plt.close(fig)
    (reports / "faq.md").write_text("| metric | dense |\n|---|---|\n| MRR@10 | 0.71 |\n")
    server = Server(folder)
    try:
        yield server, (ds, found)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    drv = _driver()
    try:
        yield drv
    finally:
        drv.quit()


def _wait(drv: Any, css: str, timeout: float = 60) -> Any:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(drv, timeout).until(ec.presence_of_element_located((By.CSS_SELECTOR,
                                                                              css)))


def _fresh(drv: Any, url: str) -> None:
    """``url`` in a new page (a changed hash alone would keep the last test's results)."""
    drv.get("about:blank")
    drv.get(url)


def _wait_text(drv: Any, css: str, text: str, timeout: float = 60) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(drv, timeout).until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, css),
                                                                       text))


def test_search_page_finds_the_faq_answer(faq_server: tuple[Server, Any], browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    server, (ds, found) = faq_server
    question = found[len(found) // 2]
    browser.get(server.url + "/")
    _wait(browser, "nav button[data-name='faq']").click()
    _wait(browser, "#item-list li")
    box = browser.find_element(By.ID, "q")
    assert browser.find_element(By.CSS_SELECTOR, "label[for='q']").text == "Text query"
    box.send_keys(question["text"], Keys.ENTER)
    first = _wait(browser, "#results li.hit .hit-id")
    assert first.text == question["id"], (question, first.text)
    payload = browser.find_element(By.CSS_SELECTOR, "#results li.hit pre").text
    assert question["text"] in payload  # the payload keeps the question
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "dashboard-search.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000

    # a filter as JSON narrows the answers; a malformed one is reported, not thrown
    page = ds.payloads[[d["id"] for d in ds.corpus].index(question["id"])]["page"]
    flt = browser.find_element(By.ID, "filter")
    flt.send_keys(json.dumps({"page": {"$ne": page}}))
    box.send_keys(Keys.ENTER)
    _wait_text(browser, "#status", "selected by the filter")
    hits = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#results .hit-id")]
    assert len(hits) == 10
    assert question["id"] not in hits
    flt.clear()
    flt.send_keys("{not json")
    box.send_keys(Keys.ENTER)
    assert "Filter: not JSON" in _wait(browser, "#status.error").text


def test_more_like_this_and_keyboard_order(faq_server: tuple[Server, Any],
                                           browser: Any) -> None:
    from selenium.webdriver.common.by import By

    server, _ = faq_server
    _fresh(browser, server.url + "/#c=faq")
    item = _wait(browser, "#item-list li")
    item_id = item.find_element(By.CSS_SELECTOR, ".hit-id").text
    assert browser.find_element(By.ID, "page").text == "1–20 of 179"
    item.find_element(By.TAG_NAME, "button").click()
    first = _wait(browser, "#results li.hit .hit-id")
    assert first.text == item_id  # an item is its own nearest neighbour
    # every form control has a label, and tab order follows the page
    for ctl in browser.find_elements(By.CSS_SELECTOR, "input, textarea"):
        if ctl.is_displayed():
            ident = ctl.get_attribute("id")
            assert browser.find_elements(By.CSS_SELECTOR, f"label[for='{ident}']"), ident
    order = []
    browser.execute_script("document.querySelector('.skip').focus()")  # the page's start
    for _ in range(12):
        browser.switch_to.active_element.send_keys("\ue004")  # Tab
        order.append(browser.switch_to.active_element.get_attribute("id") or
                     browser.switch_to.active_element.tag_name)
    assert {"q", "filter", "k"} <= set(order), order
    assert order.index("q") < order.index("filter") < order.index("k"), order


def test_reports_are_shown_and_only_from_their_folder(faq_server: tuple[Server, Any],
                                                     browser: Any) -> None:
    import urllib.error
    import urllib.request

    from selenium.webdriver.common.by import By

    server, _ = faq_server
    _fresh(browser, server.url + "/")
    img = _wait(browser, "#reports figure img")
    _wait_text(browser, "#report-list", "MRR@10")
    browser.execute_script("return arguments[0].decode()", img)  # loaded
    assert browser.execute_script("return arguments[0].naturalWidth", img) > 100
    assert img.get_attribute("alt") == "report plot faq-recall.png"
    assert "faq.md" in browser.find_element(By.ID, "reports").text
    for name in ("..%2Fpolyvec.json", "polyvec.json", ".hidden.png", "nope.png"):
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"{server.url}/v1/reports/{name}", timeout=10)
        assert info.value.code == 404, name
        info.value.close()


def test_calibration_plot_is_drawn_with_its_table(faq_server: tuple[Server, Any],
                                                  browser: Any) -> None:
    from selenium.webdriver.common.by import By

    server, _ = faq_server
    _fresh(browser, server.url + "/#c=indexed")
    plot = _wait(browser, "#calibration svg[role='img']")
    assert len(plot.find_elements(By.TAG_NAME, "circle")) == 3  # targets 0.9, 0.95, 0.99
    rows = browser.find_elements(By.CSS_SELECTOR, "#calibration tbody tr")
    assert [r.find_element(By.TAG_NAME, "td").text for r in rows] == ["0.9", "0.95", "0.99"]
    assert "HNSW16,SQ8,Refine" in browser.find_element(By.ID, "fields").text
