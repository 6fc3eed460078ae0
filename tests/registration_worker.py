"""A training process for the registration fault test: fit a tiny VAE and register it.

Run as ``python -m tests.registration_worker SPEC DATA [--hold-in-registration MARKER]``,
with VIGIL_HOME pointing at the registry to use. Prints the registration result as JSON.
``--hold-in-registration`` stops inside registration, after the version exists and before
its aliases and completion mark: it touches MARKER and sleeps, to be killed there.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from pipelines.flows import load_and_validate, split, train_detector
from pipelines.intake.spec import load_spec
from pipelines.modeling import registry
from pipelines.modeling.registry import configure_mlflow
from pipelines.modeling.training import TrainConfig
from pipelines.settings import get_settings

#: As tests.conftest's (importing conftest here would give this process another home).
FAST_VAE = {"epochs": 4, "hidden_dims": [32, 16], "latent_dim": 4, "batch_size": 256}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("spec")
    parser.add_argument("data")
    parser.add_argument("--hold-in-registration", default=None, metavar="MARKER")
    args = parser.parse_args(argv)

    if args.hold_in_registration:
        original = registry.assign_new_version_aliases

        def held(name: str, version: str) -> list[str]:
            Path(args.hold_in_registration).write_text(version)
            time.sleep(300)
            return original(name, version)

        registry.assign_new_version_aliases = held

    configure_mlflow(get_settings())
    spec = load_spec(args.spec)
    config = TrainConfig(vae=dict(FAST_VAE), detectors=["vae"])
    # The tasks' own functions: the same steps as train_flow, without a Prefect server.
    batch, validated = load_and_validate.fn(args.data, spec)
    data_split = split.fn(validated, spec, config)
    result = train_detector.fn("vae", spec, data_split, config, batch.source)
    print(json.dumps({k: result[k] for k in ("model", "version", "aliases")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
