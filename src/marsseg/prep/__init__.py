"""Before training: class statistics, outlier cleaning, folds, augmentation."""
