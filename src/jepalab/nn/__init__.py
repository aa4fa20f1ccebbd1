"""Neural network building blocks: ViT backbone, predictors, EMA."""
