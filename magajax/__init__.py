"""magajax: MAGANet (Hwang et al., ICML 2023) in JAX/Flax."""
