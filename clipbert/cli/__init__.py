"""The command line: Hydra entry points over the library, and what they print and write.

``train(cfg)``, ``predict(cfg)``, ``preprocess(cfg)`` and ``convert(cfg)`` are importable; the
``@hydra.main`` wrappers live next to them, and the top-level scripts and the console scripts
``clipbert-train`` / ``clipbert-predict`` / ``clipbert-preprocess`` / ``clipbert-convert`` call
those wrappers.
"""
