"""The one fold loop: trainer, callbacks, where it runs (runtime), pseudo-label targets."""
