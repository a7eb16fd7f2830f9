"""f2p: Fail2Progress in JAX."""
