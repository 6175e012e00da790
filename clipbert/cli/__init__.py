"""Importable entry points: ``train(cfg)``, ``predict(cfg)``, ``preprocess(cfg)``.

The ``@hydra.main`` wrappers live next to them; the top-level scripts and the console scripts
``clipbert-train`` / ``clipbert-predict`` / ``clipbert-preprocess`` all call those wrappers.
"""

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parents[1]
# A wheel ships the configs inside the package; a source checkout keeps them at the top level.
CONFIG_DIR = str(
    next((p for p in (_PACKAGE / "configs", _PACKAGE.parent / "configs") if p.is_dir()), "")
)
