"""Shared fixtures: a small rendered dSprites subset and a tiny run configuration."""

import jax
import numpy as np
import pytest

from magajax import config as cfg
from magajax.config import DEFAULT_PIVOT
from magajax.data import factors
from magajax.data.render import render_dsprites
from magajax.data.sources import DSprites


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
    """16×16 images, one flow level of one step, hidden 8, batch 8: a step takes milliseconds."""
    return cfg.override(
        cfg.preset("quick"),
        {"image_size": 16, "levels": 1, "model.steps": 1, "hidden": 8, "batch_size": 8,
         "train.steps": 4, "log_every": 2, "checkpoint_every": 2, "split": "element"},
    )
