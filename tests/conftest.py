"""Shared fixtures: a small rendered dSprites subset and a tiny run configuration."""

from pathlib import Path

import jax
import numpy as np
import pytest

from magajax import config as cfg
from magajax.config import DEFAULT_PIVOT
from magajax.data import factors
from magajax.data.render import render_dsprites
from magajax.data.sources import DSprites
from tests import helpers


@pytest.fixture(scope="session", autouse=True)
def compilation_cache(tmp_path_factory):
    """One XLA compilation cache for the session: tests that build the same step compile it once."""
    jax.config.update("jax_compilation_cache_dir", str(tmp_path_factory.mktemp("jax-cache")))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


@pytest.fixture(scope="session")
def small_dsprites() -> DSprites:
    """3,001 rendered images in dataset order: the default pivot and 3,000 random others."""
    rng = np.random.default_rng(0)
    index = np.unique(np.concatenate([[DEFAULT_PIVOT], rng.choice(factors.NUM_IMAGES, 3000, replace=False)]))
    classes = factors.index_to_classes(index)
    return DSprites(
        images=render_dsprites(index, packed=True),
        classes=classes.astype(np.uint8),
        values=factors.classes_to_values(classes),
        source="render (test subset)",
    )


@pytest.fixture
def tiny_config() -> cfg.Config:
    """`tests.helpers.tiny_config()`."""
    return helpers.tiny_config()


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory, small_dsprites, compilation_cache) -> dict[str, Path]:
    """A tiny MAGANet and VAE trained for 2 steps (one checkpoint) on split element, shared by the
    evaluation tests.

    Returns {'maganet': workdir, 'vae': workdir}. Tests that write into a workdir copy it first.
    """
    from magajax.training import loop as run

    root = tmp_path_factory.mktemp("tiny-runs")
    runs = {kind: root / f"{kind}-element" for kind in ("maganet", "vae")}
    for kind, workdir in runs.items():
        run.train(cfg.override(helpers.tiny_config(), {"kind": kind, "train.steps": 2}), workdir, data=small_dsprites,
                  progress=False)
    return runs
