"""The engine, no UI: the Learner and its one training loop, and everything a run needs."""
