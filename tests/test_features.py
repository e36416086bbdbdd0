"""Feature datasets (ssl_mix/data/features.py), their standardisation and augmentation, and the mlp model."""

import json

import numpy as np
import pytest
import torch

import ssl_mix
from ssl_mix.cli import main
from ssl_mix.config import Config, DataConfig, ModelConfig
from ssl_mix.data import (
    DataSpec,
    TensorDualLoader,
    arrays_from_features,
    eval_batches,
    feature_spec,
    load_arrays,
    read_features,
)
from ssl_mix.data.augment import noise_dropout, standardize
from ssl_mix.experiment import build_trainer, load_run_data
from ssl_mix.models import MLP, create_model, forward_layers, forward_mixed, layer_names
from ssl_mix.run import load_run

# --- files -----------------------------------------------------------------------------------------------------


def _write_csv(path, text):
    path.write_text(text)
    return path


def test_npz_reads_train_test_classes_and_unlabeled_rows(tmp_path):
    path = tmp_path / "f.npz"
    x = np.arange(12, dtype=np.float64).reshape(4, 3)
    np.savez(path, x_train=x, y_train=np.array([0, -1, 2, np.nan]), x_test=x[:2], y_test=np.array([1, 2]),
             classes=np.array(["a", "b", "c"]))
    train, test = read_features(path)
    assert train.images.shape == (4, 3, 1, 1) and train.images.dtype == torch.float32 and train.is_features
    assert train.targets.tolist() == [0, -1, 2, -1] and test.targets.tolist() == [1, 2]
    assert train.classes == test.classes == ["a", "b", "c"]
    assert torch.equal(train.images.flatten(1), torch.tensor(x, dtype=torch.float32))
    np.savez(path, x_train=x, y_train=np.array([0, 1, 1, 3]))  # no test set, no class names
    train, test = read_features(path)
    assert train.classes == ["0", "1", "2", "3"] and test.images.shape == (0, 3, 1, 1)


def test_csv_reads_named_labels_a_split_column_and_a_chosen_label_column(tmp_path):
    path = _write_csv(tmp_path / "f.csv", "a,kind,b,split\n1,cat,2,train\n3,,4,train\n5,dog,6,test\n7,-1,8,train\n")
    train, test = read_features(path, label_column="kind")
    assert train.classes == ["cat", "dog"] and train.targets.tolist() == [0, -1, -1]
    assert test.targets.tolist() == [1]
    assert train.images.flatten(1).tolist() == [[1, 2], [3, 4], [7, 8]]  # the split column is no feature
    plain = _write_csv(tmp_path / "g.csv", "x1,x2,label\n0.5,1,1\n2,3,\n")
    train, test = read_features(plain)
    assert train.classes == ["0", "1"] and train.targets.tolist() == [1, -1] and len(test) == 0


def test_parquet_reads_like_csv(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "f.parquet"
    pq.write_table(pa.table({"a": [1.0, 2.0, 3.0], "b": [4, 5, 6], "label": ["x", None, "y"],
                             "split": ["train", "train", "test"]}), path)
    train, test = read_features(path)
    assert train.classes == ["x", "y"] and train.targets.tolist() == [0, -1] and test.targets.tolist() == [1]
    assert train.images.flatten(1).tolist() == [[1, 4], [2, 5]]
    pq.write_table(pa.table({"a": [1.0, None], "label": [0, 1]}), path)
    with pytest.raises(ValueError, match=r"f.parquet, row 2, column 'a': a missing value"):
        read_features(path)
    pq.write_table(pa.table({"a": ["red", "blue"], "label": [0, 1]}), path)  # a categorical column
    assert read_features(path)[0].images.flatten(1).tolist() == [[0, 1], [1, 0]]


@pytest.mark.parametrize("text, match", [
    ("a,b,label\n1,2,0\n3,abc,1\n", r"f.csv, line 3, column 'b': 'abc' is not a number, but other values of the "
                                    r"column are numbers; fix the value"),
    ("a,b,label\n1,red,0\n3,,1\n", r"f.csv, line 3, column 'b': a missing value in a categorical column"),
    ("a,b,label\n1,,0\n", r"f.csv, line 2, column 'b': a missing value; fill in or drop"),
    ("a,b,label\n1,nan,0\n", r"line 2, column 'b': a missing value"),
    ("a,b,label\n1,inf,0\n", r"line 2, column 'b': inf"),
    ("a,b,y\n1,2,0\n", r"f.csv has no label column 'label' \(columns: a, b, y\); name it with --label-column"),
    ("a,b,label\n1,2\n", r"f.csv, line 2: 2 field\(s\) but the header has 3"),
    ("a,b,label,split\n1,2,0,valid\n", r"line 2, column 'split': 'valid'; the split column says 'train' or 'test'"),
    ("a,b,label,split\n1,2,,test\n", r"line 2, column 'label': a test row has no label"),
    ("a,a,label\n1,2,0\n", r"column name\(s\) a appear more than once"),
    ("label\n0\n", r"no feature columns besides 'label'"),
    ("", r"f.csv is empty"),
    ("a,label\n1,-3\n", r"line 2, column 'label': -3; integer labels are class indices >= 0"),
])
def test_csv_errors_name_the_column_and_row(tmp_path, text, match):
    with pytest.raises(ValueError, match=match):
        read_features(_write_csv(tmp_path / "f.csv", text))


@pytest.mark.parametrize("arrays, match", [
    ({"x_train": np.zeros((3, 2)), "y_train": np.zeros(2)}, r"f.npz: y_train has 2 label\(s\) but the features have "
                                                             r"3 row\(s\)"),
    ({"x_train": np.array([[1.0, 2.0], [3.0, np.nan]]), "y_train": np.zeros(2)},
     r"f.npz: x_train row 1, column 1 is a missing value \(NaN\)"),
    ({"x_train": np.array([["a", "b"]]), "y_train": np.zeros(1)}, r"x_train holds <U1 values, not numbers; the "
                                                                   r"features of a .npz are numbers: encode each"),
    ({"x_train": np.zeros(3), "y_train": np.zeros(3)}, r"x_train must be a 2-D \(rows, features\) matrix"),
    ({"X": np.zeros((3, 2)), "y": np.zeros(3)}, r"unknown array\(s\) X, y \(arrays: X, y\); a feature .npz holds "
                                                r"x_train"),
    ({"x_train": np.zeros((3, 2))}, r"no x_train and y_train"),
    ({"x_train": np.zeros((3, 2)), "y_train": np.zeros(3), "x_test": np.zeros((1, 2))}, r"x_test without y_test"),
    ({"x_train": np.zeros((3, 2)), "y_train": np.zeros(3), "x_test": np.zeros((1, 3)), "y_test": np.zeros(1)},
     r"x_test has 3 features per row but x_train has 2"),
    ({"x_train": np.zeros((3, 2)), "y_train": np.zeros(3), "x_test": np.zeros((1, 2)), "y_test": -np.ones(1)},
     r"y_test row 0 is -1; every test row needs a label"),
    ({"x_train": np.zeros((2, 2)), "y_train": np.array([0.5, 1.0])}, r"y_train row 0 is 0.5, not a class index"),
    ({"x_train": np.zeros((2, 2)), "y_train": np.array([0, -2])}, r"y_train row 1 is -2; labels are >= 0"),
    ({"x_train": np.zeros((2, 2)), "y_train": np.array([0, 2]), "classes": np.array(["a", "b"])},
     r"label 2 is out of range for 2 class name\(s\)"),
])
def test_npz_errors_name_the_array_and_row(tmp_path, arrays, match):
    path = tmp_path / "f.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=match):
        read_features(path)


def test_unknown_or_missing_files_and_a_missing_root_are_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no feature file at .*nope.npz; give --data-root a .npz, .csv, "
                                                 r".parquet file"):
        read_features(tmp_path / "nope.npz")
    (tmp_path / "f.txt").write_text("a")
    with pytest.raises(ValueError, match=r"unknown feature file type '.txt'"):
        read_features(tmp_path / "f.txt")
    with pytest.raises(ValueError, match=r"root \(--data-root\) is required for dataset 'features': the feature file"):
        load_arrays("features", None, "train")
    with pytest.raises(ValueError, match=r"dataset 'features' has splits 'train' and 'test', not 'extra'"):
        load_arrays("features", tmp_path / "f.txt", "extra")


def test_arrays_from_features_is_public_and_checks_its_input():
    arrays = ssl_mix.arrays_from_features(np.ones((5, 4)), [0, 1, -1, 1, 0])
    assert arrays.images.shape == (5, 4, 1, 1) and arrays.classes == ["0", "1"] and arrays.is_features
    assert arrays.subset([4, 0]).targets.tolist() == [0, 0]
    assert arrays_from_features(torch.zeros(2, 3)).targets.tolist() == [-1, -1]  # no labels: all unlabeled
    with pytest.raises(ValueError, match=r"x row 0, column 2 is inf"):
        arrays_from_features([[0.0, 1.0, np.inf]])
    with pytest.raises(ValueError, match=r"y must be 1-D"):
        arrays_from_features(np.ones((2, 2)), np.zeros((2, 1)))
    with pytest.raises(ValueError, match=r"float32 feature vectors \(N, F, 1, 1\), got torch.float32 tensor of shape "
                                         r"\(2, 3, 2, 2\); use .* arrays_from_features"):
        ssl_mix.ImageArrays(torch.zeros(2, 3, 2, 2), torch.zeros(2, dtype=torch.int64), ["a"])


# --- standardisation and augmentation ---------------------------------------------------------------------------


def test_feature_spec_is_the_training_pools_mean_and_std():
    x = np.random.default_rng(0).normal(3.0, 2.0, size=(50, 4))
    x[:, 3] = 7.0  # a constant feature keeps std 1
    spec = feature_spec(arrays_from_features(x, np.zeros(50, dtype=np.int64)))
    x32 = x.astype(np.float32).astype(np.float64)
    assert spec.features and spec.crop_padding == 0 and not spec.flip
    np.testing.assert_allclose(spec.mean, x32.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(spec.std[:3], x32.std(axis=0)[:3], rtol=1e-12)
    assert spec.std[3] == 1.0
    with pytest.raises(ValueError, match=r"feature_spec needs non-empty feature vectors"):
        feature_spec(ssl_mix.ImageArrays(torch.zeros(1, 1, 2, 2, dtype=torch.uint8),
                                         torch.zeros(1, dtype=torch.int64), ["a"]))


def test_data_spec_keeps_feature_augmentation_for_features_only():
    with pytest.raises(ValueError, match=r"features=True\) takes no crop or flip"):
        DataSpec("f", 2, (0.0,), (1.0,), features=True)
    with pytest.raises(ValueError, match=r"noise and feature_dropout augment feature vectors"):
        DataSpec("f", 2, (0.0,), (1.0,), noise=0.1)
    with pytest.raises(ValueError, match=r"DataSpec.feature_dropout"):
        DataSpec("f", 2, (0.0,), (1.0,), crop_padding=0, flip=False, features=True, feature_dropout=1.0)


def test_noise_and_dropout_follow_the_generator_and_keep_the_scale():
    x = torch.zeros(2000, 5, 1, 1)
    assert noise_dropout(x, 0.0, 0.0, generator=None) is x
    a = noise_dropout(x, 0.5, 0.0, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, noise_dropout(x, 0.5, 0.0, generator=torch.Generator().manual_seed(1)))
    assert abs(float(a.std()) - 0.5) < 0.02
    ones = noise_dropout(torch.ones(2000, 5, 1, 1), 0.0, 0.25, generator=torch.Generator().manual_seed(2))
    assert ones.unique().tolist() == [0.0, torch.tensor(1 / 0.75).item()]
    assert abs(float((ones == 0).float().mean()) - 0.25) < 0.02


def _features_npz(tmp_path, n_test=60):
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    order = np.random.default_rng(0).permutation(len(data.target))
    test, train = order[:n_test], order[n_test:]
    path = tmp_path / "bc.npz"
    np.savez(path, x_train=data.data[train], y_train=data.target[train], x_test=data.data[test],
             y_test=data.target[test])
    return path


def test_loader_standardises_and_augments_by_seed_stream_and_step(tmp_path):
    train, _ = read_features(_features_npz(tmp_path))
    spec = feature_spec(train)
    labeled, unlabeled = train.subset(range(20)), train.subset(range(20, len(train)))
    plain = TensorDualLoader(labeled, unlabeled, spec, batch_size=8, seed=3)
    x_l, y_l, x_u = plain.batch(5)
    mean, std = torch.tensor(spec.mean, dtype=torch.float32), torch.tensor(spec.std, dtype=torch.float32)
    index = plain._indices(0, 5)
    assert torch.equal(x_l, (labeled.images[index] - mean.view(-1, 1, 1)) / std.view(-1, 1, 1))
    noisy_spec = DataSpec(**{**spec.__dict__, "noise": 0.1, "feature_dropout": 0.2})
    noisy = TensorDualLoader(labeled, unlabeled, noisy_spec, batch_size=8, seed=3)
    again = TensorDualLoader(labeled, unlabeled, noisy_spec, batch_size=8, seed=3)
    again.load_state_dict(noisy.state_dict())
    first, second = noisy.batch(5), again.batch(5)
    assert torch.equal(first[0], second[0]) and torch.equal(first[2], second[2])
    assert not torch.equal(first[0], x_l) and torch.equal(first[1], y_l)
    assert not torch.equal(first[0], noisy.batch(6)[0][: len(first[0])])
    off = TensorDualLoader(labeled, unlabeled, noisy_spec, batch_size=8, seed=3, augment=False)
    assert torch.equal(off.batch(5)[0], x_l)
    with pytest.raises(ValueError, match=r"feature vectors have no strong view, so FixMatch does not apply"):
        TensorDualLoader(labeled, unlabeled, spec, batch_size=8, seed=3, unlabeled_views=("weak", "strong"))


# --- config -----------------------------------------------------------------------------------------------------


def test_feature_settings_are_checked_in_config_terms():
    with pytest.raises(ValueError, match=r"data.feature_noise applies to data.dataset='features' only, not 'digits'"):
        DataConfig(dataset="digits", feature_noise=0.1)
    with pytest.raises(ValueError, match=r"data.label_column applies to data.dataset='features' only"):
        DataConfig(dataset="digits", label_column="y")
    with pytest.raises(ValueError, match=r"data.zca=True does not apply to feature vectors"):
        DataConfig(dataset="features", zca=True)
    with pytest.raises(ValueError, match=r"data.loader='torch' does not apply to feature vectors.*loader='tensor'"):
        DataConfig(dataset="features", loader="torch")
    with pytest.raises(ValueError, match=r"data.feature_dropout"):
        DataConfig(dataset="features", feature_dropout=1.0)
    with pytest.raises(ValueError, match=r"data.label_column must name a column"):
        DataConfig(dataset="features", label_column=" ")
    assert ModelConfig(name="mlp", widths=("64", "32")).widths == (64, 32)
    assert ModelConfig(name="mlp", widths=(8,), norm="layer").architecture_options() == {"widths": (8,),
                                                                                         "norm": "layer"}
    with pytest.raises(ValueError, match=r"model.widths must be positive integers such as 256,256, got"):
        ModelConfig(name="mlp", widths=("64", "x"))
    with pytest.raises(ValueError, match=r"model.widths applies to the mlp and cnn-small models, not 'wrn28-2'"):
        ModelConfig(widths=(8,))
    with pytest.raises(ValueError, match=r"model.norm applies to the mlp model, not 'cnn-small'"):
        ModelConfig(name="cnn-small", norm="layer")
    assert ModelConfig(name="cnn-small", widths=(4,)).architecture_options() == {"widths": (4,)}
    assert ModelConfig(name="mlp").architecture_options() == {"norm": "batch"}


# --- the model --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("norm", ["batch", "layer", "none"])
def test_mlp_is_staged_so_hidden_layers_can_be_mixed(norm):
    from ssl_mix.mixing import sample_mix_plan

    model = create_model("mlp", 3, in_channels=6, widths=(16, 8), norm=norm, dropout=0.1).eval()
    assert isinstance(model, MLP) and layer_names(model) == ["hidden1", "hidden2", "logits"]
    x = torch.randn(10, 6, 1, 1)
    logits, layers = forward_layers(model, x, [0, 1])
    assert logits.shape == (10, 3) and layers[0].shape == (10, 16) and layers[1].shape == (10, 8)
    assert torch.equal(model(x), model(x.flatten(1)))  # the flat vector is the input as well
    plan = sample_mix_plan(10, k=2, alpha=1.0, generator=torch.Generator().manual_seed(0))
    assert forward_mixed(model, x, plan, layer=0).shape == (10, 3)
    with pytest.raises(ValueError, match=r"norm"):
        MLP(3, in_channels=6, norm="group")
    with pytest.raises(TypeError, match=r"widths must be a non-empty sequence"):
        MLP(3, in_channels=6, widths=())


# --- runs end to end --------------------------------------------------------------------------------------------


def _train_args(path, out, method, *extra):
    return ["train", "--dataset", "features", "--data-root", str(path), "--model", "mlp", "--widths", "32,32",
            "--method", method, "--num-labels", "20", "--batch-size", "20", "--unlabeled-batch-size", "40",
            "--steps", "150", "--eval-every", "150", "--lr", "0.05", "--bn-momentum", "0.1", "--out", str(out),
            "--device", "cpu", "--no-progress", *extra]


@pytest.mark.parametrize("method", ["erm", "ict"])
def test_a_feature_run_trains_from_the_cli_and_beats_chance(tmp_path, method):
    path = _features_npz(tmp_path)
    out = tmp_path / method
    assert main(_train_args(path, out, method)) == 0
    report = json.loads((out / "report.json").read_text())
    accuracy = report["final"]["teacher"]["test"]["accuracy"]
    majority = 100 * max(np.mean(np.load(path)["y_test"]), 1 - np.mean(np.load(path)["y_test"]))
    assert accuracy > majority + 10, (accuracy, majority)


def test_standardisation_is_saved_in_the_run_and_applied_identically_in_eval_and_predict(tmp_path, capsys):
    path = _features_npz(tmp_path)
    out = tmp_path / "run"
    assert main(_train_args(path, out, "ict", "--steps", "20", "--eval-every", "20", "--num-valid-per-class", "5")) == 0
    assert main(["calibrate", str(out), "--device", "cpu"]) == 0  # the validation rows, standardised as in training
    train, test = read_features(path)
    run = load_run(out, device="cpu")
    assert run.spec == feature_spec(train) and run.input_shape == (30, 1, 1)
    (x, _), = list(eval_batches(test, run.spec, 1000, "cpu"))
    predictor = ssl_mix.load_predictor(out, device="cpu")
    assert float(predictor.model.temperature) != 1.0
    model = predictor.model.model  # the network of the checkpoint the predictor chose
    with torch.no_grad():
        expected = torch.softmax(model(x).float() / float(predictor.model.temperature), dim=1)
    prediction = predictor.predict(test.images)
    assert torch.equal(prediction.probabilities, expected)
    assert main(["eval", str(out), "--device", "cpu"]) == 0
    assert main(["split", "--dataset", "features", "--data-root", str(path), "--num-labels", "10", "--seed", "1",
                 "--out", str(tmp_path / "split.json")]) == 0
    split = json.loads((tmp_path / "split.json").read_text())
    assert len(split["labeled"]) == 10
    # Image files and exports are for image runs; both say so and point to the Python predictor.
    for command in (["predict", str(out), str(path), "--out", str(tmp_path / "p.csv")],
                    ["export", str(out), "--format", "torchscript", "--out", str(tmp_path / "m.pt")]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert "predict(x), x a float (N, F, 1, 1) tensor" in err and "Traceback" not in err
    with pytest.raises(ValueError, match=r"this model takes 30 input channels \(a run trained on feature vectors\)"):
        ssl_mix.predict_files(predictor, [path], tmp_path / "p.csv")


def test_feature_vectors_train_the_mlp_and_the_mlp_trains_on_feature_vectors(tmp_path, capsys):
    path = _features_npz(tmp_path)
    assert main(["train", "--dataset", "features", "--data-root", str(path), "--num-labels", "20", "--steps", "1",
                 "--out", str(tmp_path / "a"), "--device", "cpu"]) == 2
    assert ("feature vectors (--dataset features) train --model mlp, and the mlp takes feature vectors only; got "
            "--dataset features with --model wrn28-2") in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"got data.dataset='digits' with model.name='mlp'"):
        build_trainer(Config().replace(data={"dataset": "digits", "num_labels": 20}, model={"name": "mlp"},
                                       train={"device": "cpu", "out_dir": str(tmp_path / "b")}))


def _interrupting(method, at):
    class Interrupting:
        uses_unlabeled = method.uses_unlabeled

        def loss(self, student, batch, ctx):
            if ctx.step == at:
                raise KeyboardInterrupt
            return method.loss(student, batch, ctx)

    return Interrupting()


def test_a_resumed_feature_run_equals_an_uninterrupted_one(tmp_path):
    path = _features_npz(tmp_path)

    def cfg(out):
        return Config().replace(
            data={"dataset": "features", "data_root": str(path), "num_labels": 20, "batch_size": 10,
                  "unlabeled_batch_size": 20, "num_valid_per_class": 5, "feature_noise": 0.1,
                  "feature_dropout": 0.1},
            model={"name": "mlp", "widths": (16, 16), "dropout": 0.2, "bn_momentum": 0.1},
            method={"name": "ict", "mix_layers": ("input", 0)},
            train={"steps": 12, "eval_every": 6, "log_every": 3, "checkpoint_every": 4, "progress": False,
                   "out_dir": str(out), "device": "cpu"})

    data = load_run_data(cfg(tmp_path / "full"))
    assert data.spec.noise == 0.1 and data.spec.feature_dropout == 0.1 and data.valid is not None
    full = build_trainer(cfg(tmp_path / "full"), data)
    full.fit()
    first = build_trainer(cfg(tmp_path / "part"), data)
    first.method = _interrupting(first.method, 5)
    with pytest.raises(KeyboardInterrupt):
        first.fit()
    resumed = build_trainer(cfg(tmp_path / "part"), data)
    assert resumed.resume() == 4
    resumed.fit()
    for (name, a), b in zip(full.student.state_dict().items(), resumed.student.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    for a, b in zip(full.teacher.state_dict().values(), resumed.teacher.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_standardize_matches_the_inference_models_formula():
    x = torch.randn(7, 3, 1, 1) * 5 + 2
    mean, std = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0.5, 2.0, 4.0])
    inference = ssl_mix.InferenceModel(torch.nn.Flatten(), mean.tolist(), std.tolist(), output="logits")
    assert torch.equal(standardize(x, mean, std).flatten(1), inference(x))
    with pytest.raises(ValueError, match=r"features must have shape \(..., F, 1, 1\)"):
        standardize(torch.zeros(2, 3), mean, std)


def test_linearity_probe_and_analysis_standardise_feature_vectors():
    from ssl_mix.analysis.linearity import linearity_probe, measure_linearity

    arrays = arrays_from_features(np.random.default_rng(0).normal(5.0, 3.0, (40, 6)), np.zeros(40, dtype=np.int64))
    spec = feature_spec(arrays)
    model = create_model("mlp", 2, in_channels=6, widths=(8, 8)).eval()
    probe = linearity_probe(arrays, spec, num_pairs=9, seed=7, device="cpu")
    x = standardize(arrays.images, torch.tensor(spec.mean, dtype=torch.float32),
                    torch.tensor(spec.std, dtype=torch.float32))
    expected = measure_linearity(model, x, num_pairs=9, seed=7)
    got = probe(model)
    assert list(got) == list(expected) and all(got[k] == pytest.approx(expected[k], rel=1e-5) for k in got)
    assert got[next(iter(got))] > 0.01  # hidden1 (leaky ReLU) is not linear on standardised inputs


def test_a_csv_run_with_named_classes_a_categorical_column_a_split_column_and_a_saved_split(tmp_path, capsys):
    from sklearn.datasets import load_wine

    data = load_wine()
    is_test = np.random.default_rng(1).random(len(data.target)) < 0.3
    lines = [",".join([*data.feature_names, "band", "kind", "split"])]  # band: a categorical column
    bands = np.digitize(data.data[:, 0], np.quantile(data.data[:, 0], [1 / 3, 2 / 3]))
    for row, band, target, test in zip(data.data, bands, data.target, is_test, strict=True):
        lines.append(",".join([*map(repr, row.tolist()), ("low", "mid", "high")[band], str(data.target_names[target]),
                               "test" if test else "train"]))
    path = _write_csv(tmp_path / "wine.csv", "\n".join(lines) + "\n")
    split = tmp_path / "split.json"
    assert main(["split", "--dataset", "features", "--data-root", str(path), "--label-column", "kind",
                 "--num-labels", "15", "--seed", "0", "--out", str(split)]) == 0
    out = tmp_path / "run"
    assert main(["train", "--dataset", "features", "--data-root", str(path), "--label-column", "kind", "--split",
                 str(split), "--model", "mlp", "--widths", "32", "--norm", "layer", "--method", "ict", "--batch-size",
                 "15", "--steps", "100", "--eval-every", "100", "--lr", "0.05", "--feature-noise", "0.05",
                 "--out", str(out), "--device", "cpu", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "ssl-mix: data: features" in err and "3 classes" in err and "15 labeled" in err
    assert "features: 16 per example, standardised" in err and "noise 0.05" in err  # 13 numbers, band one-hot
    run = load_run(out, device="cpu")
    assert run.classes == ["class_0", "class_1", "class_2"]
    assert main(["eval", str(out), "--device", "cpu"]) == 0  # reads the test rows with the run's label column
    assert "teacher" in capsys.readouterr().out
    assert json.loads((out / "report.json").read_text())["final"]["teacher"]["test"]["accuracy"] > 70  # chance: 40


def test_parquet_without_pyarrow_says_how_to_install_it(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    (tmp_path / "f.parquet").write_bytes(b"PAR1")
    with pytest.raises(ValueError, match=r"reading Parquet needs pyarrow: pip install 'ssl-mix\[features\]'"):
        read_features(tmp_path / "f.parquet")


def test_categorical_columns_become_one_hot_so_mixing_mixes_their_embeddings(tmp_path):
    path = _write_csv(tmp_path / "f.csv", "size,colour,label,split\n1.5,red,0,train\n2,blue,1,train\n"
                                          "3,green,,train\n4,red,1,test\n")
    train, test = read_features(path)
    # size, then colour as blue / green / red (sorted categories of all rows, the test row's included)
    assert train.images.flatten(1).tolist() == [[1.5, 0, 0, 1], [2, 1, 0, 0], [3, 0, 1, 0]]
    assert test.images.flatten(1).tolist() == [[4, 0, 0, 1]]
    spec = feature_spec(train)
    model = create_model("mlp", 2, in_channels=4, widths=(8,), norm="none")
    first = model.stages[0][1]  # the first linear layer: its columns 1..3 are the colour embeddings
    x = standardize(train.images, torch.tensor(spec.mean, dtype=torch.float32),
                    torch.tensor(spec.std, dtype=torch.float32)).flatten(1)
    lam = torch.tensor([[0.3], [0.7]])
    mixed_then_embedded = first(lam[0] * x[0] + lam[1] * x[1])
    embedded_then_mixed = lam[0] * first(x[0]) + lam[1] * first(x[1])
    torch.testing.assert_close(mixed_then_embedded, embedded_then_mixed)


@pytest.mark.parametrize("setting", [{"mean": (0.5,)}, {"std": (0.2,)}, {"interpolation": "bicubic"}])
def test_image_input_settings_do_not_apply_to_features(setting):
    from ssl_mix.config import DataConfig

    name = next(iter(setting))
    with pytest.raises(ValueError, match=f"data.{name}=.* does not apply to feature vectors .*drop data.{name}"):
        DataConfig(dataset="features", data_root="f.npz", **setting)
