//! A from-scratch LeNet-5 on `ndarray` and `rayon`.
