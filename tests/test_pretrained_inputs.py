"""Inputs as pretrained weights expect them: timm's pretrained configuration (ssl_mix.models.pretrained_inputs),
where a run uses it (ssl_mix.data.run_data.resolve_inputs), data.mean / data.std / data.interpolation, and the
recorded values applied by prediction and export. Nothing here downloads anything."""

import json

import numpy as np
import pytest
import torch

from ssl_mix import Config, DataConfig, preset
from ssl_mix.cli import main
from ssl_mix.data.run_data import load_run_data, resolve_inputs
from ssl_mix.models.pretrained_inputs import pretrained_inputs

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def test_pretrained_inputs_come_from_timms_registry():
    resnet = pretrained_inputs("timm:resnet18")
    assert (resnet["mean"], resnet["std"]) == IMAGENET
    assert resnet["image_size"] == (224, 224) and resnet["interpolation"] == "bicubic"
    vit = pretrained_inputs("timm:vit_tiny_patch16_224")
    assert vit["mean"] == (0.5,) * 3 and vit["std"] == (0.5,) * 3
    assert pretrained_inputs("timm:resnet18.tv_in1k")["interpolation"] == "bilinear"  # a tag picks its weights
    assert pretrained_inputs("wrn28-2") is None and pretrained_inputs("cnn-small") is None
    with pytest.raises(ValueError, match=r"model.name='timm:resnet18.nope': Invalid pretrained tag"):
        pretrained_inputs("timm:resnet18.nope")


def _cfg(**data):
    return Config.from_dict({"data": data, "model": {"name": "timm:resnet18", "pretrained_file": "w.safetensors"}})


def test_resolve_inputs_fills_only_what_the_user_left_unset():
    named = resolve_inputs(_cfg(dataset="cifar10"))
    assert (named.data.mean, named.data.std) == IMAGENET
    assert named.data.image_size is None and named.data.interpolation is None  # 32-px datasets keep their size
    folder = resolve_inputs(_cfg(dataset="folder", data_root="x"))
    assert folder.data.image_size == (224, 224) and folder.data.interpolation == "bicubic"
    assert resolve_inputs(folder) == folder  # resolving the recorded config changes nothing
    mine = resolve_inputs(_cfg(dataset="folder", data_root="x", mean=[0.5, 0.5, 0.5], std=[0.25],
                               image_size=96, interpolation="lanczos"))
    assert mine.data.mean == (0.5,) * 3 and mine.data.std == (0.25,)
    assert mine.data.image_size == (96, 96) and mine.data.interpolation == "lanczos"
    gray = resolve_inputs(_cfg(dataset="folder", data_root="x", channels=1))
    assert gray.data.mean == pytest.approx((sum(IMAGENET[0]) / 3,)) and len(gray.data.std) == 1
    scratch = Config.from_dict({"model": {"name": "timm:resnet18"}})
    assert resolve_inputs(scratch) is scratch  # random init: the training images' statistics, as before
    ours = _cfg().replace(model={"name": "wrn28-2"})
    assert resolve_inputs(ours) is ours


def test_init_from_a_missing_run_is_an_error_naming_the_setting(tmp_path):
    cfg = Config.from_dict({"model": {"name": "cnn-small", "init_from": str(tmp_path / "nope")}})
    with pytest.raises(FileNotFoundError, match=r"model.init_from='.*nope': "):
        resolve_inputs(cfg)


def test_mean_and_std_settings_are_checked_in_config_terms():
    assert DataConfig(mean=0.5, std=[1, 2, 3]).std == (1.0, 2.0, 3.0)
    with pytest.raises(ValueError, match=r"data.std must be a finite number > 0, got 0.0"):
        DataConfig(std=[0.2, 0.0, 0.2])
    with pytest.raises(ValueError, match=r"data.mean has 2 values; give one value for every channel, or one per "
                                         r"channel \(3 for RGB\)"):
        DataConfig(mean=[0.5, 0.5])
    with pytest.raises(ValueError, match=r"data.std has 3 values.*\(1 with data.channels=1\)"):
        DataConfig(dataset="folder", channels=1, std=[0.2, 0.2, 0.2])
    with pytest.raises(TypeError, match=r"data.mean must be a list of numbers"):
        DataConfig(mean="0.5")
    with pytest.raises(ValueError, match=r"data.interpolation applies to data.dataset 'folder'"):
        DataConfig(interpolation="bicubic")


def test_bad_std_on_the_command_line_exits_2_in_flag_terms(capsys):
    assert main(["train", "--dataset", "digits", "--std", "0", "--print-config"]) == 2
    err = capsys.readouterr().err
    assert "--std must be a finite number > 0" in err and "Traceback" not in err
    assert main(["train", "--dataset", "digits", "--mean", "0.5", "0.5", "--print-config"]) == 2
    assert "--mean has 2 values" in capsys.readouterr().err
    assert main(["train", "--dataset", "digits", "--mean", "0.1", "0.2", "0.3", "--print-config"]) == 0
    assert json.loads(capsys.readouterr().out)["data"]["mean"] == [0.1, 0.2, 0.3]


def test_mean_and_std_settings_normalise_the_run():
    data = load_run_data(DataConfig(dataset="digits", num_labels=50, mean=[0.1, 0.2, 0.3], std=0.25), seed=0)
    assert data.spec.mean == pytest.approx((0.2,)) and data.spec.std == (0.25,)  # three on grayscale: averaged
    auto = load_run_data(DataConfig(dataset="digits", num_labels=50), seed=0)
    assert auto.spec.mean != data.spec.mean  # the training images' statistics otherwise


def test_a_pretrained_timm_run_records_and_applies_its_inputs(tmp_path, capsys):
    """A timm model starting from a weights file trains on the digits with the pretrained configuration's
    normalisation (averaged to the one gray channel), records it, and prediction and export apply it."""
    import timm
    from safetensors.torch import save_file

    from ssl_mix import export_model, load_predictor, load_run, run_experiment

    weights = tmp_path / "w.safetensors"
    model = timm.create_model("test_efficientnet_ln", num_classes=10, in_chans=1)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    out = tmp_path / "run"
    cfg = preset("demo").replace(
        model={"name": "timm:test_efficientnet_ln", "pretrained_file": str(weights)},
        data={"num_labels": 30, "batch_size": 16, "unlabeled_batch_size": 16},
        method={"name": "erm"},
        train={"steps": 2, "eval_every": 2, "log_every": 1, "checkpoint_every": 0, "out_dir": str(out),
               "progress": False, "device": "cpu"})
    run_experiment(cfg)
    err = capsys.readouterr().err
    assert "pretrained configuration): data.mean=0.485,0.456,0.406" in err
    gray_mean, gray_std = sum(IMAGENET[0]) / 3, sum(IMAGENET[1]) / 3
    run = load_run(out, device="cpu")
    assert run.spec.mean == pytest.approx((gray_mean,)) and run.spec.std == pytest.approx((gray_std,))
    assert run.config.data.mean == IMAGENET[0]
    predictor = load_predictor(run)
    assert predictor.model.mean.flatten().tolist() == pytest.approx([gray_mean])
    assert predictor.model.std.flatten().tolist() == pytest.approx([gray_std])
    sidecar = export_model(run, tmp_path / "m.safetensors", format="safetensors")
    assert sidecar["mean"] == pytest.approx([gray_mean]) and sidecar["std"] == pytest.approx([gray_std])
    assert sidecar["input"]["interpolation"] == "bilinear"  # the digits are never resized
    run_experiment(cfg.replace(train={"steps": 3}), resume=True)  # the recorded inputs are the resolved ones
    assert load_run(out, device="cpu").step == 3


def test_interpolation_reaches_the_decoded_pixels(tmp_path):
    from PIL import Image

    from ssl_mix.data import decode_image
    from ssl_mix.data.images import describe_decoding

    rng = np.random.default_rng(0)
    path = tmp_path / "a.png"
    Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)).save(path)
    with Image.open(path) as im:
        expected = np.asarray(im.resize((16, 16), Image.Resampling.BICUBIC)).transpose(2, 0, 1)
    bicubic = decode_image(path, image_size=16, resize="stretch", interpolation="bicubic")
    assert torch.equal(bicubic, torch.from_numpy(np.ascontiguousarray(expected)))
    assert not torch.equal(bicubic, decode_image(path, image_size=16, resize="stretch"))  # bilinear by default
    assert describe_decoding(image_size=16, resize="crop", channels=3, interpolation="lanczos")["resize"][
        "filter"] == "LANCZOS"
    with pytest.raises(ValueError, match=r"interpolation must be one of bilinear, bicubic, lanczos, got 'box'"):
        decode_image(path, image_size=16, interpolation="box")


def test_the_decoded_image_cache_keeps_one_entry_per_filter(tmp_path):
    from PIL import Image

    from ssl_mix.data import decode_files
    from ssl_mix.data.files import ImageFiles

    rng = np.random.default_rng(1)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    files = ImageFiles(sorted(tmp_path.glob("*.png")), torch.full((3,), -1), [], tmp_path)
    cache = tmp_path / "cache"
    bilinear = decode_files(files, image_size=8, cache=cache).arrays.images
    bicubic = decode_files(files, image_size=8, cache=cache, interpolation="bicubic").arrays.images
    assert not torch.equal(bilinear, bicubic)
    assert torch.equal(decode_files(files, image_size=8, cache=cache).arrays.images, bilinear)


@pytest.mark.parametrize("loader", ["tensor", "torch"])  # in memory, and streamed from the files
def test_a_pretrained_folder_run_takes_the_pretrained_size_and_filter_everywhere(tmp_path, capsys, loader):
    """A folder of 20x24 images: training, prediction, selection and export all bring images to the pretrained
    input size with the pretrained filter (160 px, bicubic for timm's test_efficientnet_ln)."""
    import timm
    from PIL import Image
    from safetensors.torch import save_file

    from ssl_mix import export_model, load_predictor, load_run, run_experiment
    from ssl_mix.data import decode_image

    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    for split, count in (("train", 6), ("test", 2)):
        for c in ("cat", "dog"):
            (root / split / c).mkdir(parents=True)
            for i in range(count):
                Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(root / split / c / f"{i}.png")
    weights = tmp_path / "w.safetensors"
    model = timm.create_model("test_efficientnet_ln", num_classes=2)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    out = tmp_path / "run"
    cfg = preset("demo").replace(
        model={"name": "timm:test_efficientnet_ln", "pretrained_file": str(weights)},
        data={"dataset": "folder", "data_root": str(root), "num_labels": 4, "batch_size": 2,
              "unlabeled_batch_size": 2, "cache": False, "loader": loader},
        method={"name": "erm"},
        train={"steps": 1, "eval_every": 1, "log_every": 1, "checkpoint_every": 0, "out_dir": str(out),
               "progress": False, "device": "cpu"})
    run_experiment(cfg)
    err = capsys.readouterr().err
    assert "pretrained configuration): data.image_size=160,160, data.mean=0.485" in err
    assert "data.interpolation=bicubic" in err
    run = load_run(out, device="cpu")
    assert run.input_shape == (3, 160, 160) and run.spec.mean == IMAGENET[0]
    predictor = load_predictor(run)
    assert predictor.decode_settings == {"image_size": (160, 160), "channels": 3, "resize": "crop",
                                         "interpolation": "bicubic"}
    path = root / "test" / "cat" / "0.png"
    assert torch.equal(predictor.prepare(Image.open(path)), decode_image(path, **predictor.decode_settings)[None])
    sidecar = export_model(run, tmp_path / "m.safetensors", format="safetensors")
    assert sidecar["input"]["interpolation"] == "bicubic" and sidecar["mean"] == list(IMAGENET[0])
    assert sidecar["preprocessing"]["decode"]["resize"]["filter"] == "BICUBIC"
    # The next round (--init-from this run) takes the inputs this run recorded, whatever its model.
    following = resolve_inputs(cfg.replace(model={"pretrained_file": None, "init_from": str(out)}))
    assert following.data.image_size == (160, 160) and following.data.interpolation == "bicubic"
    assert following.data.mean == IMAGENET[0] and following.data.std == IMAGENET[1]
