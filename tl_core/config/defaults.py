"""Defaults that the app and the command line share, each defined once here: a page and a
command read the same constant, so the two cannot drift apart. (The training recipe's own
defaults are ``TrainConfig``'s field defaults.)"""

# A freeze-depth sweep trains one run per depth: short runs are enough to compare the depths,
# and the chosen one trains longer afterwards.
SWEEP_EPOCHS = 3
# Classes shown per predicted image (fewer when the model knows fewer).
PREDICT_TOP_K = 3
# The backbone advisor: images in its stratified sample, and folds of its cross-validated probe.
ADVISOR_MAX_IMAGES = 500
ADVISOR_FOLDS = 5
# Batches in a learning-rate sweep (the learning-rate finder).
LR_FINDER_STEPS = 100
