"""The model both examples tune: kernel ridge regression on scikit-learn's diabetes data (442 patients, 10
measurements, disease progression after a year), after scaling and PCA, scored by the root-mean-square error of
a 5-fold cross-validation (lower is better; about a tenth of a second per setting)."""

from sklearn.datasets import load_diabetes
from sklearn.decomposition import PCA
from sklearn.kernel_ridge import KernelRidge
from sklearn.model_selection import KFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def cv_rmse(components: int, alpha: float, gamma: float, kernel: str, degree: int) -> float:
    """Cross-validated RMSE of PCA(components) + KernelRidge(alpha, gamma, kernel, degree) on the diabetes data."""
    X, y = load_diabetes(return_X_y=True)
    model = make_pipeline(StandardScaler(), PCA(n_components=components, random_state=0),
                          KernelRidge(alpha=alpha, gamma=gamma, kernel=kernel, degree=degree))
    folds = KFold(n_splits=5, shuffle=True, random_state=0)
    return float(-cross_val_score(model, X, y, cv=folds, scoring="neg_root_mean_squared_error").mean())
