"""End to end in a real headless Chromium: the playground page and the viz report.

The browser fixtures, and how they find Chromium, are in browser_support.py.
"""

import json

import httpx
import pytest

from charrnn.inspection.serve import BackgroundServer, ServeConfig, create_app
from charrnn.inspection.viz import build_report
from viz_support import TEXT, tiny_model


def backgrounds(page) -> list[str]:
    return page.eval_on_selector_all(".ct-text span", "els => els.map(e => getComputedStyle(e).backgroundColor)")


def test_playground_generates_streams_and_colours(page):
    model, vocab = tiny_model("lstm", layers=2, hidden_size=16)
    with BackgroundServer(create_app(model, vocab, ServeConfig(), name="tiny")) as url:
        request = {"prime": "He said", "length": 300, "temperature": 1.0, "top_k": 0, "top_p": 1.0, "seed": 11}
        with httpx.stream("POST", url + "/api/generate", json=request) as r:
            expected = json.loads(list(r.iter_lines())[-1])["text"]
        page.goto(url + "/")
        page.wait_for_function("document.getElementById('model').textContent.includes('LSTM')")
        page.fill("#prime", "He said")
        page.fill("#length", "300")
        page.fill("#temperature", "1")
        page.fill("#seed", "11")
        # Record every length the live text takes while it streams in.
        page.evaluate("""() => { window.seen = [];
            new MutationObserver(() => window.seen.push(document.getElementById('live').textContent.length))
              .observe(document.getElementById('live'), {childList: true, characterData: true, subtree: true}); }""")
        page.click("#go")
        page.wait_for_selector(".ct-text span", timeout=30_000)
        seen = page.evaluate("window.seen")
        assert len({n for n in seen if n > 0}) > 1, f"the text did not stream in pieces: {seen}"

        assert page.inner_text(".ct-text") == expected  # the generated text is on the page
        colours = backgrounds(page)
        assert len(colours) == len(expected)
        assert len(set(colours)) > 5 and any(c not in ("rgb(255, 255, 255)", "rgba(0, 0, 0, 0)") for c in colours)

        page.click(".ct-text span:nth-child(20)")  # a generated character: its top-5 guesses
        detail = page.inner_text(".ct-detail")
        assert "guesses for this character" in detail and "guesses for the next character" in detail
        assert page.locator(".ct-detail .ct-top").first.locator("tr").count() == 5

        before = backgrounds(page)  # pick another neuron from the ranked list: the colours change
        page.select_option(".ct-criterion", "start of word")
        current = (page.input_value(".ct-group"), page.input_value(".ct-neuron"))
        links = page.locator(".ct-ranking a")
        other = next(
            i
            for i in range(links.count())
            if (links.nth(i).get_attribute("data-g"), links.nth(i).get_attribute("data-n")) != current
        )
        links.nth(other).click()
        assert (page.input_value(".ct-group"), page.input_value(".ct-neuron")) != current
        assert backgrounds(page) != before
        page.select_option(".ct-mode", "surprisal")
        assert backgrounds(page) != before


def test_playground_shows_a_4xx_message(page):
    model, vocab = tiny_model("gru")
    with BackgroundServer(create_app(model, vocab, ServeConfig(max_length=50), name="tiny")) as url:
        page.goto(url + "/")
        page.fill("#length", "51")
        page.click("#go")
        page.wait_for_selector("#status.error")
        assert "length must be in [1, 50]" in page.inner_text("#status")


def test_report_opens_from_disk_and_shows_guesses(page, tmp_path):
    model, vocab = tiny_model("lstm")
    html, _ = build_report(model, vocab, TEXT, "report")
    path = tmp_path / "report.html"
    path.write_text(html, encoding="utf-8")
    page.route("**/*", lambda route: route.abort() if not route.request.url.startswith("file:") else route.continue_())
    page.goto(path.as_uri())  # anything fetched from the network would fail: the report needs nothing
    assert page.inner_text(".ct-text") == TEXT
    assert len(set(backgrounds(page))) > 5
    page.hover(".ct-text span:nth-child(5)")
    assert "guesses for the next character" in page.inner_text(".ct-detail")


def test_classifier_page_updates_letter_by_letter(page, tmp_path):
    from charrnn.load import load_model
    from viz_support import tiny_surnames

    model, vocab, meta = load_model(str(tiny_surnames(tmp_path)))
    with BackgroundServer(create_app(model, vocab, ServeConfig(max_prime=20), name="names", meta=meta)) as url:
        page.goto(url + "/")
        page.wait_for_function("document.getElementById('model').textContent.includes('classifier of 3 labels')")
        page.wait_for_function("document.getElementById('bars').dataset.text === ''")  # before any character
        assert [float(p) for p in page.eval_on_selector_all("#bars .row", "rs => rs.map(r => r.dataset.p)")] == [
            pytest.approx(1 / 3)
        ] * 3
        page.focus("#text")
        russian = []
        for n in range(1, len("Karpov") + 1):
            typed = "Karpov"[:n]
            page.keyboard.type(typed[-1])
            page.wait_for_function(f"document.getElementById('bars').dataset.text === {json.dumps(typed)}")
            answer = httpx.post(url + "/api/classify", json={"text": typed}).json()
            rows = page.eval_on_selector_all(
                "#bars .row",
                """rs => rs.map(r => [r.dataset.label, Number(r.dataset.p), r.querySelector('.p').textContent,
                                     r.querySelector('.fill').style.width])""",
            )
            assert [r[0] for r in rows] == [label for label, _ in answer["top"]]  # most likely first
            for (_, p, shown, width), (_, want) in zip(rows, answer["top"]):
                assert p == pytest.approx(want, rel=1e-12)
                shown, width = float(shown.rstrip("%")), float(width.rstrip("%"))  # both to one decimal
                assert shown == width and abs(shown - 100 * want) <= 0.05 + 1e-9
            # The strip: one column per letter, the top label's probability after each.
            k = answer["labels"].index(answer["top"][0][0])
            strip = page.eval_on_selector_all("#strip .step", "s => s.map(e => Number(e.dataset.p))")
            assert strip == pytest.approx([row[k] for row in answer["steps"]], rel=1e-12) and len(strip) == n
            assert page.inner_text("#strip-caption") == f"the probability of {answer['top'][0][0]} after each character"
            russian.append(dict(map(tuple, answer["top"]))["Russian"])
        assert rows[0][0] == "Russian" and russian[-1] > 2 * russian[-2]  # the final "v" makes it Russian
        assert len(set(russian)) == len(russian)  # the bars moved at every letter
        assert page.inner_text("#step") == f'after "Karpov": Russian {100 * russian[-1]:.1f}%'
        page.hover("#strip .step:nth-child(5)")  # pointing at a letter tells its numbers
        k = answer["labels"].index("Russian")
        assert page.inner_text("#step").startswith(f'after "Karpo": Russian {100 * answer["steps"][4][k]:.1f}%')

        page.keyboard.type(" !")  # outside the vocabulary: not read, and the page says so
        page.wait_for_function("document.getElementById('bars').dataset.text === 'Karpov !'")
        assert "not read: ' !'" in page.inner_text("#status")
        assert page.locator("#strip .step").count() == len("Karpov")


def test_playground_of_a_generate_run_writes_for_the_label_picked(page, tmp_path):
    from charrnn.load import load_model
    from viz_support import tiny_surnames

    model, vocab, meta = load_model(str(tiny_surnames(tmp_path, "generate")))
    with BackgroundServer(create_app(model, vocab, ServeConfig(), name="gen", meta=meta)) as url:
        request = {"label": "Spanish", "prime": "", "length": 40, "temperature": 1.0, "seed": 5}
        with httpx.stream("POST", url + "/api/generate", json=request) as r:
            expected = json.loads(list(r.iter_lines())[-1])["text"]
        page.goto(url + "/")
        page.wait_for_selector("#label option[value=Spanish]", state="attached")
        assert page.is_visible("#label") and page.eval_on_selector_all("#label option", "os => os.length") == 3
        page.select_option("#label", "Spanish")
        page.fill("#length", "40")
        page.fill("#temperature", "1")
        page.fill("#seed", "5")
        page.click("#go")
        page.wait_for_selector(".ct-text span", timeout=30_000)
        assert page.inner_text(".ct-text") == expected
