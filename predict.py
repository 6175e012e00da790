"""Hydra entry point (configs/predict.yaml), same as the `clipbert-predict` command."""

from clipbert.cli.predict import main

if __name__ == "__main__":
    main()
