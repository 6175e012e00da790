"""The local app (clipbert/cli/app.py) as a person uses it: served on loopback, a file of
tests/assets uploaded and a question asked in a headless browser; the answers must be the
Predictor's and the frames the ones it samples, and the page must fetch nothing from elsewhere."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from clipbert import Predictor
from clipbert.cli.app_request import ask
from clipbert.cli.checkpoint_cache import checkpoint_at
from tests.browser import SCREENSHOTS, screenshot
from tests.helpers import compose_config, free_port

pytest.importorskip("gradio", reason="the app needs the [app] extra (gradio)")

ASSETS = Path(__file__).resolve().parents[1] / "assets"
VIDEO = ASSETS / "h264_176x144_29.97fps_lowbitrate.mp4"
IMAGE = ASSETS / "photo_128x128_tiny.jpg"
QUESTION = "what color are the shapes?"
WAIT_MS = 30_000


def app_config(*overrides: str):
    return compose_config(
        "app", ["accelerator=cpu", "precision=32-true", f"server_port={free_port()}", *overrides]
    )


@pytest.fixture(scope="module")
def app(demo_checkpoint) -> Iterator[tuple[str, Path]]:
    """The app started on the demo video-QA checkpoint: (its URL, the checkpoint)."""
    from clipbert.cli.app import serve

    checkpoint = demo_checkpoint("demo_video_qa")
    served = serve(app_config(f"ckpt_path={checkpoint}"), block=False)
    try:
        assert served.local_url.startswith("http://127.0.0.1:")
        yield served.local_url, checkpoint
    finally:
        served.close()


def open_app(page, url: str) -> list[str]:
    """Open the page; return the list that collects every URL the page requests."""
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(url)
    page.locator("#ask").wait_for(timeout=WAIT_MS)
    return requested


def upload(page, path: Path) -> None:
    page.locator("#visual input[type=file]").set_input_files(str(path))
    # the file's download link appears once the upload is done
    page.locator(f'#visual a[download="{path.name}"]').wait_for(timeout=WAIT_MS)


def fill(page, box: str, text: str) -> None:
    page.locator(f"#{box} textarea, #{box} input").first.fill(text)


def shown_frames(page, count: int) -> list[str]:
    """Wait for ``count`` loaded images in the gallery; return their captions."""
    images = page.locator("#frames img")
    page.wait_for_function(
        """n => {
            const images = [...document.querySelectorAll('#frames img')];
            return images.length === n && images.every(i => i.complete && i.naturalWidth > 0);
        }""",
        arg=count,
        timeout=WAIT_MS,
    )
    assert images.count() == count
    return page.locator("#frames").inner_text()


def answer_rows(page) -> list[tuple[str, int]]:
    """The answers the label shows, with their percentages."""
    text = page.locator("#answers").inner_text()
    return [(m.group(1).strip(), int(m.group(2))) for m in re.finditer(r"(.+?)\n(\d+)%", text)]


def only_loopback(requested: list[str], url: str) -> None:
    elsewhere = [u for u in requested if not u.startswith((url.rstrip("/"), "data:", "blob:"))]
    assert not elsewhere, f"the page requested other hosts: {elsewhere[:5]}"


def test_a_question_about_a_video_shows_the_predictors_answers_and_frames(app, page) -> None:
    url, checkpoint = app
    requested = open_app(page, url)
    upload(page, VIDEO)
    fill(page, "question", QUESTION)
    fill(page, "n_clips", "3")
    page.locator("#ask").click()

    direct = Predictor.from_checkpoint(checkpoint, n_clips=3, precision="32-true")
    expected = direct.answer(VIDEO, QUESTION, top_k=5)
    sampled = direct.sampled(VIDEO)
    clips, per_clip = sampled.frames.shape[:2]
    assert clips == 3
    page.locator("#answers").get_by_text(expected[0].answer).first.wait_for(timeout=WAIT_MS)
    captions = shown_frames(page, clips * per_clip)
    for clip, times in enumerate(sampled.seconds):
        for time in times:
            assert f"clip {clip + 1} · {time:.2f} s" in captions
    rows = answer_rows(page)
    assert [answer for answer, _ in rows] == [a.answer for a in expected]
    assert [percent for _, percent in rows] == [round(a.prob * 100) for a in expected]
    assert "3 clips x" in page.locator("#summary").inner_text()
    screenshot(page, "app")
    only_loopback(requested, url)
    assert not page.errors


def test_an_image_with_a_checkpoint_typed_into_the_page(app, page, demo_checkpoint) -> None:
    url, _ = app
    checkpoint = demo_checkpoint("demo_image_qa")
    requested = open_app(page, url)
    fill(page, "checkpoint", str(checkpoint.parent.parent))  # its run folder: best.ckpt
    upload(page, IMAGE)
    fill(page, "question", "what shape is it?")
    page.locator("#ask").click()

    expected = Predictor.from_checkpoint(checkpoint, precision="32-true").answer(
        IMAGE, "what shape is it?", top_k=5
    )
    page.locator("#answers").get_by_text(expected[0].answer).first.wait_for(timeout=WAIT_MS)
    assert "image" in shown_frames(page, 1)
    assert [answer for answer, _ in answer_rows(page)] == [a.answer for a in expected]
    screenshot(page, "app_image")
    only_loopback(requested, url)


def test_what_the_model_cannot_answer_is_a_message_on_the_page(app, page) -> None:
    url, _ = app
    open_app(page, url)
    upload(page, VIDEO)
    fill(page, "caption", "shapes move across the frame")  # a caption to a QA model
    page.locator("#ask").click()
    page.get_by_text(re.compile("TypeError: .*caption", re.IGNORECASE)).first.wait_for(
        timeout=WAIT_MS
    )
    assert page.locator("#frames img").count() == 0
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "app_error.png"))  # the viewport: the message floats


def test_ask_checks_the_boxes_and_reads_run_folders(demo_checkpoint) -> None:
    checkpoint = demo_checkpoint("demo_video_qa")
    assert checkpoint_at(str(checkpoint.parent.parent)) == checkpoint
    with pytest.raises(ValueError, match="give the path"):
        checkpoint_at("  ")
    with pytest.raises(FileNotFoundError, match="no such"):
        checkpoint_at(str(checkpoint.with_name("missing.ckpt")))
    predictor = Predictor.from_checkpoint(checkpoint, precision="32-true")
    with pytest.raises(ValueError, match="not both"):
        ask(predictor, VIDEO, question="why?", caption="a caption")
    with pytest.raises(ValueError, match="need their question"):
        ask(predictor, VIDEO, options="red\nblue")
    before = predictor.reader.sampling
    reply = ask(predictor, VIDEO, QUESTION, n_clips=2)
    assert len(reply.frames) == 2 * before.num_frames
    assert predictor.reader.sampling == before  # n_clips=2 was for that question only
    assert (predictor.sampled(VIDEO).frames == predictor.frames(VIDEO)[0]).all()


def test_a_missing_gradio_names_the_extra_once() -> None:
    from clipbert.cli.errors import install_hint, one_line

    line = one_line(ModuleNotFoundError("No module named 'gradio'"))
    assert line.count("pip install 'clipbert[app]'") == 1
    assert install_hint(line) == ""


def test_options_and_captions_go_to_choose_and_match(demo_checkpoint) -> None:
    mc = Predictor.from_checkpoint(demo_checkpoint("demo_mc"), precision="32-true")
    options = ["red circle", "blue square", "green triangle", "a star", "nothing"]  # its 5
    reply = ask(mc, VIDEO, QUESTION, options="\n".join(options) + "\n\n")
    chosen = mc.choose(VIDEO, QUESTION, options)
    assert reply.scores == {a.answer: a.prob for a in chosen}
    retrieval = Predictor.from_checkpoint(demo_checkpoint("demo_retrieval"), precision="32-true")
    reply = ask(retrieval, IMAGE, caption="a man in a cap")
    assert reply.scores["match"] == retrieval.match(IMAGE, "a man in a cap")
    assert sum(reply.scores.values()) == pytest.approx(1.0)
    assert [caption for _, caption in reply.frames] == ["image"]
