"""The torch-free core shared by training and serving: the model bundle contract (`lens.bundle`)
and the feature-visualisation engine that runs on a bundle's gradient graph (`lens.optvis`)."""
