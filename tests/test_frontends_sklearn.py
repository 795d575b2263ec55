"""scikit-learn frontend: MLPs and scaler pipelines compile to the same function, and solve to the same optimum."""

import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.neural_network import MLPClassifier, MLPRegressor  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import MaxAbsScaler, MinMaxScaler, Normalizer, RobustScaler, StandardScaler  # noqa: E402

import relumilp  # noqa: E402
from relumilp.errors import InvalidNetworkError, UnsupportedOperatorError  # noqa: E402


def data(seed=0, n=200, d=3):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 5, size=(n, d)) * np.array([1.0, 10.0, 0.1])[:d]
    y = np.sin(X[:, 0]) + 0.1 * X[:, 1] - X[:, -1] ** 2
    return X, y


def fitted(estimator, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return estimator.fit(X, y)


@pytest.mark.parametrize("scaler", [None, StandardScaler, MinMaxScaler, "both"])
@pytest.mark.parametrize("activation", ["relu", "identity"])
def test_regressor_pipelines_match_predict(scaler, activation):
    X, y = data()
    mlp = MLPRegressor(hidden_layer_sizes=(8, 6), activation=activation, max_iter=200, random_state=0)
    steps = {None: [], "both": [MinMaxScaler(), StandardScaler()]}.get(scaler) if scaler in (None, "both") else [scaler()]
    model = fitted(make_pipeline(*steps, mlp) if steps else mlp, X, y)
    net = relumilp.load_network(model)
    np.testing.assert_allclose(net.forward(X)[:, 0], model.predict(X), rtol=1e-12, atol=1e-12)


def test_classifier_logits_give_the_predicted_class():
    X, y = data(1)
    labels = np.digitize(y, np.quantile(y, [0.33, 0.66]))
    model = fitted(make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(10,), max_iter=300, random_state=0)),
                   X, labels)
    net = relumilp.load_network(model)
    assert np.array_equal(np.argmax(net.forward(X), axis=1), model.predict(X))


def test_optimum_of_a_sklearn_surrogate_is_the_forward_pass_maximum():
    X, y = data(2, d=2)
    model = fitted(make_pipeline(StandardScaler(), MLPRegressor(hidden_layer_sizes=(6,), max_iter=300, random_state=0)),
                   X, y)
    lower, upper = X.min(axis=0), X.max(axis=0)
    result = relumilp.optimize(model, (lower, upper), maximize=0)
    grid = np.stack(np.meshgrid(*[np.linspace(a, b, 120) for a, b in zip(lower, upper)]), -1).reshape(-1, 2)
    assert result.status == "optimal"
    assert result.objective >= model.predict(grid).max() - 1e-9
    assert result.objective == pytest.approx(float(model.predict(result.x[None])[0]), abs=1e-9)


@pytest.mark.parametrize("scaler", [lambda: StandardScaler(with_mean=False), lambda: StandardScaler(with_std=False),
                                    MaxAbsScaler, RobustScaler, lambda: RobustScaler(with_centering=False),
                                    lambda: RobustScaler(with_scaling=False)])
@pytest.mark.parametrize("activation", ["relu", "tanh", "logistic"])
def test_every_scaler_option_and_smooth_activation_match_predict(scaler, activation):
    # StandardScaler(with_mean=False) still stores mean_, which transform() does not subtract
    X, y = data(3)
    model = fitted(make_pipeline(scaler(), MLPRegressor(hidden_layer_sizes=(7, 5), activation=activation, max_iter=100,
                                                        random_state=0)), X, y)
    net = relumilp.load_network(model)
    np.testing.assert_allclose(net.forward(X)[:, 0], model.predict(X), rtol=1e-12, atol=1e-12)


def test_non_finite_weights_are_refused_naming_the_layer():
    X, y = data()
    model = fitted(MLPRegressor(hidden_layer_sizes=(4,), max_iter=5), X, y)
    model.coefs_[1][0, 0] = np.nan
    with pytest.raises(InvalidNetworkError, match=r"layer 1 .*coefs_\[1\]"):
        relumilp.load_network(model)


@pytest.mark.parametrize("make", [lambda: make_pipeline(MinMaxScaler(clip=True), MLPRegressor(max_iter=5)),
                                  lambda: make_pipeline(Normalizer(), MLPRegressor(max_iter=5))])
def test_refused_models_say_what_to_change(make):
    X, y = data()
    with pytest.raises(UnsupportedOperatorError):
        relumilp.load_network(fitted(make(), X, y))


# MLPRegressor(loss="poisson") predicts exp(last layer): the compiled network's output must be predict().
def test_poisson_regressor_output_is_its_prediction():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 2))
    y = np.exp(0.5 * X[:, 0] - 0.3 * X[:, 1])
    try:
        model = MLPRegressor(hidden_layer_sizes=(6,), loss="poisson", max_iter=200, random_state=0)
    except TypeError:  # scikit-learn before the poisson loss
        pytest.skip("this scikit-learn has no MLPRegressor(loss=...)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning
        model.fit(X, y)
    assert model.out_activation_ == "exp"
    net = relumilp.load_network(model)
    np.testing.assert_allclose(net.forward(X[:20]), model.predict(X[:20]).reshape(20, 1), rtol=1e-12)
    assert net.activations[-1].activation.kind == "exp"
