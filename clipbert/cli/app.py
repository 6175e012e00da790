"""``python app.py``: a page on this machine to ask a checkpoint about a video or image and see
the frames it saw (configs/app.yaml; the [app] extra, gradio).

The page serves 127.0.0.1 unless ``server_name`` says otherwise, and reaches nothing beyond it:
gradio's telemetry and version check are off, there is no share link, the fonts are the
system's. What it asks goes through ``Predictor`` as ``predict.py video=...`` does.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from types import ModuleType
from typing import Any

import hydra
from omegaconf import DictConfig

from clipbert.cli.app_request import ask
from clipbert.cli.checkpoint_cache import CheckpointCache
from clipbert.cli.errors import INPUT_ERRORS, reported
from clipbert.runs.configs import CONFIG_DIR

log = logging.getLogger(__name__)

# Errors of what a person typed or uploaded; TypeError: the model cannot score that kind of
# question (an open question to a retrieval model). Anything else is also logged with its trace.
EXPECTED_ERRORS = (*INPUT_ERRORS, TypeError)
SANS = ("ui-sans-serif", "system-ui", "sans-serif")  # installed fonts: nothing is downloaded
MONO = ("ui-monospace", "monospace")
UPLOADS_KEPT = (3600, 86400)  # gradio's delete_cache: (every s, older than s)


def gradio() -> ModuleType:
    """The gradio module, its telemetry off before it loads (it reads the setting at import)."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    import gradio as gr

    return gr


def is_loopback(host: str) -> bool:
    """Whether serving ``host`` keeps the page on this machine."""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # another host name
        return False


def readable(exc: Exception) -> str:
    """The error as one line for the page; the traceback goes to the terminal when the error
    is not about the input."""
    expected = isinstance(exc, EXPECTED_ERRORS)
    if not expected:
        log.error("the app could not answer", exc_info=exc)
    text = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
    line = f"{type(exc).__name__}: {' '.join(str(text).split())}"
    return line if expected else f"{line} (the terminal shows the traceback)"


def build_page(cfg: DictConfig, models: CheckpointCache | None = None) -> Any:
    """The page's ``gr.Blocks``: a checkpoint, a file and a question in; answers and frames
    out. ``models``: checkpoints already loaded (one is made from ``cfg`` otherwise)."""
    gr = gradio()
    models = models or CheckpointCache(cfg, cfg.models_kept)
    start = cfg.get("ckpt_path") or cfg.get("run_dir") or ""

    def respond(
        checkpoint: str,
        visual: str | None,
        question: str,
        options: str,
        caption: str,
        n_clips: float | None,
        top_k: float,
    ) -> tuple[dict[str, float], str, list]:
        try:
            if not visual:
                raise ValueError("upload a video or an image first")
            path, predictor = models.get(checkpoint or "")
            clips = int(n_clips) if n_clips else None  # 0: as evaluated
            reply = ask(predictor, visual, question, options, caption, clips, int(top_k))
        except Exception as exc:
            # stays until closed: a message that fades is missed
            raise gr.Error(readable(exc), duration=None, print_exception=False) from exc
        return reply.scores, f"`{path}`: {reply.summary}", reply.frames

    # uploads are copied to gradio's temporary folder: checked hourly, removed after a day
    with gr.Blocks(title="ClipBERT", analytics_enabled=False, delete_cache=UPLOADS_KEPT) as page:
        gr.Markdown("## ClipBERT\nAsk a checkpoint about a video or an image.")
        with gr.Row():
            with gr.Column(scale=1):
                checkpoint = gr.Textbox(
                    value=str(start),
                    label="Checkpoint",
                    elem_id="checkpoint",
                    placeholder=".ckpt, model folder or train.py run folder",
                )
                visual = gr.File(label="Video or image", type="filepath", elem_id="visual")
                question = gr.Textbox(label="Question", elem_id="question")
                options = gr.Textbox(
                    label="Options, one per line (multiple-choice models)",
                    lines=3,
                    elem_id="options",
                )
                caption = gr.Textbox(label="Caption (retrieval models)", elem_id="caption")
                with gr.Row():
                    n_clips = gr.Number(
                        value=cfg.get("n_clips") or 0,
                        label="n_clips (0: as the checkpoint evaluates)",
                        precision=0,
                        minimum=0,
                        elem_id="n_clips",
                    )
                    top_k = gr.Slider(1, 20, value=cfg.top_k, step=1, label="top_k answers")
                button = gr.Button("Ask", variant="primary", elem_id="ask")
            with gr.Column(scale=2):
                answers = gr.Label(label="Answers", elem_id="answers")
                summary = gr.Markdown(elem_id="summary")
                frames = gr.Gallery(
                    label="Frames the model saw",
                    columns=4,
                    fit_columns=False,  # one image keeps a column's width
                    object_fit="contain",
                    elem_id="frames",
                )
        inputs = [checkpoint, visual, question, options, caption, n_clips, top_k]
        button.click(respond, inputs, [answers, summary, frames])
        question.submit(respond, inputs, [answers, summary, frames])
    return page


def serve(cfg: DictConfig, *, block: bool = True) -> Any:
    """Start the page at ``cfg.server_name``:``cfg.server_port``; with ``block=False`` return
    at once (the caller ``close()``s the returned page). The start checkpoint, if any, loads
    first, so a wrong path stops here rather than on the first question."""
    gr = gradio()
    if cfg.get("ckpt_path") and cfg.get("run_dir"):
        raise ValueError("give ckpt_path=FILE or run_dir=RUN, not both")
    models = CheckpointCache(cfg, cfg.models_kept)
    start = cfg.get("ckpt_path") or cfg.get("run_dir")
    if start:
        path, _ = models.get(str(start))
        log.info("loaded %s", path)
    page = build_page(cfg, models)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # gradio's own start-up checks
    page.launch(
        server_name=cfg.server_name,
        server_port=cfg.server_port,
        share=False,
        prevent_thread_lock=True,
        quiet=True,  # its hints are about share links, which this app never makes
        ssr_mode=False,
        enable_monitoring=False,
        mcp_server=False,
        pwa=False,
        theme=gr.themes.Default(font=SANS, font_mono=MONO),
    )
    where = "this machine only" if is_loopback(cfg.server_name) else "open to the network"
    print(f"clipbert app at {page.local_url} ({where}); Ctrl+C stops it", flush=True)
    if block:
        page.block_thread()
    return page


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="app")
@reported
def main(cfg: DictConfig) -> None:
    """Console entry point (``python app.py`` / ``clipbert-app``)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    serve(cfg)
