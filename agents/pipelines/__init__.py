"""The product's jobs as testable functions: training, evaluation, export, replay and
sweeps, the demo and the results pipeline. The console scripts in ``pulsecal.scripts``
are a few lines of ``@hydra.main`` (or argparse) around these."""
