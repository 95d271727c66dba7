"""What lrwidget wraps or builds beside its own Learner: fastai Learners, torchvision and timm architectures."""
