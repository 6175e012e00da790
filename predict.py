"""Hydra entry point; see configs/predict.yaml. Same as the `clipbert-predict` console script."""

from clipbert.cli.predict import main

if __name__ == "__main__":
    main()
