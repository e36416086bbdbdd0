import numpy as np
import pytest
import torch

from ssl_mix import ZCA, apply_zca, data_spec, fit_zca, load_arrays, normalize


@pytest.fixture(scope="module")
def jpeg_images(cifar10_jpeg_train300):
    images = load_arrays("folder", cifar10_jpeg_train300, "train").images
    assert images.shape == (300, 3, 32, 32) and images.dtype == torch.uint8
    return images


CIFAR = data_spec("cifar10")


def _normalised(images: torch.Tensor) -> torch.Tensor:
    return normalize(images, CIFAR.mean, CIFAR.std, torch.float64)


def test_whitened_training_covariance_is_the_identity(jpeg_images):
    # 8x8 crops of 300 real images: D = 192 < N, so the covariance is invertible and eps = 0 whitens exactly.
    crops = jpeg_images[:, :, 12:20, 12:20].contiguous()
    zca = fit_zca(crops, 0.0, mean=CIFAR.mean, std=CIFAR.std)
    z = apply_zca(_normalised(crops), zca).reshape(300, -1)
    assert z.dtype == torch.float64
    cov = torch.cov(z.T, correction=0)
    torch.testing.assert_close(z.mean(0), torch.zeros(192, dtype=torch.float64), atol=2e-3, rtol=0)
    torch.testing.assert_close(cov, torch.eye(192, dtype=torch.float64), atol=2e-2, rtol=0)
    # With eps > 0 the whitened variances along the principal directions are s / (s + eps) < 1, never more.
    damped = apply_zca(_normalised(crops), fit_zca(crops, 1.0, mean=CIFAR.mean, std=CIFAR.std)).reshape(300, -1)
    assert torch.linalg.eigvalsh(torch.cov(damped.T, correction=0)).max() < 1.0


def test_transform_equals_a_numpy_svd_reference_on_real_images(jpeg_images):
    # 16x16 crops: D = 768 > N = 300, the singular case that only eps keeps finite.
    crops = jpeg_images[:, :, 8:24, 8:24].contiguous()
    eps = 1e-2
    x = _normalised(crops).reshape(300, -1).numpy()
    mean = x.mean(axis=0)
    sigma = (x - mean).T @ (x - mean) / x.shape[0]
    u, s, _ = np.linalg.svd(sigma)
    reference = u @ np.diag(1.0 / np.sqrt(s + eps)) @ u.T
    zca = fit_zca(crops, eps, mean=CIFAR.mean, std=CIFAR.std)
    assert zca.matrix.dtype == torch.float32 and zca.image_shape == (3, 16, 16) and zca.eps == eps
    np.testing.assert_allclose(zca.mean.numpy(), mean, rtol=0, atol=1e-6)
    np.testing.assert_allclose(zca.matrix.numpy(), reference, rtol=0, atol=1e-4 * np.abs(reference).max())
    expected = (x - mean) @ reference.T
    whitened = apply_zca(torch.from_numpy(x).float().view(300, 3, 16, 16), zca)
    assert whitened.dtype == torch.float32 and whitened.shape == (300, 3, 16, 16)
    np.testing.assert_allclose(whitened.reshape(300, -1).numpy(), expected, rtol=0, atol=1e-3)


def test_uint8_and_normalised_float_images_give_the_same_transform(jpeg_images):
    crops = jpeg_images[:50, :, :6, :6].contiguous()
    from_uint8 = fit_zca(crops, 0.1, mean=CIFAR.mean, std=CIFAR.std)
    from_float = fit_zca(_normalised(crops), 0.1)
    torch.testing.assert_close(from_uint8.matrix, from_float.matrix)
    torch.testing.assert_close(from_uint8.mean, from_float.mean)


def test_state_dict_round_trip_and_call():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 2, 3, 3, generator=g)
    zca = fit_zca(x, 1e-3)
    state = zca.state_dict()
    assert set(state) == {"mean", "matrix", "eps", "image_shape"} and state["image_shape"] == [2, 3, 3]
    again = ZCA.from_state_dict(state)
    torch.testing.assert_close(again(x), zca(x))
    torch.testing.assert_close(zca(x), apply_zca(x, zca))
    assert again.to("cpu").image_shape == (2, 3, 3)


def test_bad_input_errors():
    x = torch.randn(10, 1, 2, 2)
    zca = fit_zca(x, 1e-2)
    cases = [
        (lambda: fit_zca(x.numpy(), 1e-2), TypeError, "images must be a tensor"),
        (lambda: fit_zca(x[0], 1e-2), ValueError, r"batch \(N, C, H, W\) with N >= 2"),
        (lambda: fit_zca(x[:1], 1e-2), ValueError, "N >= 2"),
        (lambda: fit_zca(x, -1.0), ValueError, "eps must be a finite number >= 0"),
        (lambda: fit_zca(x, float("nan")), ValueError, "eps must be a finite number >= 0"),
        (lambda: fit_zca(x, True), TypeError, "eps must be a number"),
        (lambda: fit_zca(x.to(torch.uint8), 1e-2), ValueError, "uint8 images need the dataset's mean and std"),
        (lambda: fit_zca(x, 1e-2, mean=[0.5], std=[0.5]), ValueError, "leave mean and std out"),
        (lambda: fit_zca(x.long(), 1e-2), TypeError, "uint8 or floating point"),
        (lambda: fit_zca(torch.zeros(10, 1, 2, 2), 0.0), ValueError, "not finite.*use eps > 0"),
        (lambda: apply_zca(x[:, :, :1], zca), ValueError, r"fitted on images of shape \(1, 2, 2\)"),
        (lambda: apply_zca(x.long(), zca), TypeError, "floating-point tensor"),
        (lambda: apply_zca(x, "zca"), TypeError, "zca must be a ZCA"),
        (lambda: ZCA.from_state_dict({"mean": zca.mean}), ValueError, r"not a ZCA state: missing \['matrix'"),
        (lambda: ZCA(zca.mean, zca.matrix[:2], 0.0, (1, 2, 2)), ValueError, r"needs mean \(4,\) and matrix \(4, 4\)"),
        (lambda: ZCA(zca.mean, zca.matrix, 0.0, (4,)), ValueError, r"image_shape must be \(C, H, W\)"),
        (lambda: ZCA(zca.mean.numpy(), zca.matrix, 0.0, (1, 2, 2)), TypeError, "must be tensors"),
    ]
    for call, error, match in cases:
        with pytest.raises(error, match=match):
            call()


def test_prediction_and_export_whiten_as_training_did(tmp_path):
    """A run trained with --zca: the predictor and its exports apply the checkpoint's whitening after normalising."""
    from ssl_mix import (
        apply_zca,
        export_model,
        load_export,
        load_predictor,
        load_run,
        normalize,
        preprocess_transform,
        preset,
        run_experiment,
    )

    cfg = preset("demo").replace(data={"zca": True, "num_valid_per_class": 5},
                                 train={"steps": 4, "eval_every": 4, "out_dir": str(tmp_path / "run"),
                                        "progress": False, "device": "cpu"})
    run_experiment(cfg)
    run = load_run(tmp_path / "run", device="cpu")
    zca = preprocess_transform(run.preprocess)
    assert zca is not None and run.calibration is not None
    images = torch.randint(0, 256, (6, *run.input_shape), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    temperature = run.calibration["temperature"]["teacher"]
    with torch.no_grad():
        expected = (run.models["teacher"](apply_zca(normalize(images, run.spec.mean, run.spec.std), zca))
                    / temperature).softmax(dim=1)
        predictor = load_predictor(run, device="cpu")
        assert torch.allclose(predictor.model(images), expected, atol=1e-5)
        plain = load_predictor(run, device="cpu").model
        plain.whiten = False
        assert not torch.allclose(plain(images), expected, atol=1e-3)  # without the whitening the outputs differ
        for fmt in ("torchscript", "safetensors"):
            path = tmp_path / f"model.{fmt}"
            meta = export_model(run, path, format=fmt)
            assert meta["zca"] is True
            assert torch.allclose(load_export(path)(images), expected, atol=1e-5)
