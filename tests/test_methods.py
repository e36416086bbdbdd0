import pytest
import torch
import torch.nn.functional as F

from ssl_mix.losses import ict_consistency, soft_target_cross_entropy
from ssl_mix.methods import ERM, ICT, Batch, ManifoldMixup, Mixup, StepContext
from ssl_mix.mixing import sample_mix_plan
from ssl_mix.models import create_model, forward_mixed
from ssl_mix.ramps import ConsistencySchedule
from ssl_mix.teacher import EMATeacher


def _batch(seed=0, b_l=6, b_u=8):
    g = torch.Generator().manual_seed(seed)
    return Batch(torch.randn(b_l, 1, 8, 8, generator=g), torch.randint(0, 10, (b_l,), generator=g),
                 torch.randn(b_u, 1, 8, 8, generator=g))


def _model(seed=0):
    torch.manual_seed(seed)
    return create_model("cnn-small", 10, in_channels=1, bn_momentum=0.1).eval()


def _ctx(seed=0, teacher=None, step=0):
    return StepContext(step=step, generator=torch.Generator().manual_seed(seed),
                       host_generator=torch.Generator().manual_seed(seed + 1), teacher=teacher)


def test_erm_is_cross_entropy_on_labeled_data():
    model, batch = _model(), _batch()
    out = ERM().loss(model, batch, _ctx())
    assert torch.allclose(out.loss, F.cross_entropy(model(batch.x_l), batch.y_l))
    assert set(out.logs) == {"loss/supervised"}


def test_mixup_equals_soft_target_loss_on_the_same_plan():
    model, batch = _model(), _batch()
    out = Mixup(k=3, alpha=0.5).loss(model, batch, _ctx(seed=4))
    plan = sample_mix_plan(6, 3, 0.5, generator=torch.Generator().manual_seed(4))
    expected = soft_target_cross_entropy(model(plan.apply(batch.x_l)), plan.apply(F.one_hot(batch.y_l, 10).float()))
    assert torch.allclose(out.loss, expected)


def test_mixup_with_alpha_zero_is_erm():
    model, batch = _model(), _batch()
    assert torch.allclose(Mixup(alpha=0.0).loss(model, batch, _ctx()).loss, ERM().loss(model, batch, _ctx()).loss,
                          atol=1e-6)


def test_cutmix_path_runs_through_timm():
    model, batch = _model(), _batch()
    out = Mixup(alpha=0.0, cutmix_alpha=1.0, num_classes=10).loss(model, batch, _ctx())
    assert torch.isfinite(out.loss)


def test_manifold_mixup_uses_the_drawn_layer():
    model, batch = _model(), _batch()
    method = ManifoldMixup(layers=(1,), k=2, alpha=1.0)
    out = method.loss(model, batch, _ctx(seed=2))
    plan = sample_mix_plan(6, 2, 1.0, generator=torch.Generator().manual_seed(2))
    logits = forward_mixed(model, batch.x_l, plan, 1)
    expected = soft_target_cross_entropy(logits, plan.apply(F.one_hot(batch.y_l, 10).float()))
    assert torch.allclose(out.loss, expected)


def test_ict_loss_is_supervised_plus_weighted_consistency():
    model, batch = _model(), _batch()
    teacher = EMATeacher(_model(seed=1))
    method = ICT(k=2, alpha=1.0, schedule=ConsistencySchedule(max_weight=7.0, ramp="none"), teacher_mode="eval")
    out = method.loss(model, batch, _ctx(seed=3, teacher=teacher))
    plan = sample_mix_plan(8, 2, 1.0, generator=torch.Generator().manual_seed(3))
    sup = F.cross_entropy(model(batch.x_l), batch.y_l)
    cons = ict_consistency(model(plan.apply(batch.x_u)), teacher(batch.x_u), plan)
    assert torch.allclose(out.loss, sup + 7.0 * cons)
    assert out.logs["consistency_weight"] == 7.0


def test_ict_gradient_reaches_only_the_student():
    model, batch = _model(), _batch()
    teacher = EMATeacher(_model(seed=1))
    ICT(k=4, alpha=0.5).loss(model, batch, _ctx(teacher=teacher)).loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    assert all(p.grad is None for p in teacher.parameters())


def test_ict_weight_follows_the_ramp():
    model, batch = _model(), _batch()
    teacher = EMATeacher(_model(seed=1))
    method = ICT(schedule=ConsistencySchedule(max_weight=10.0, ramp="linear", ramp_steps=10))
    weights = [method.loss(model, batch, _ctx(teacher=teacher, step=s)).logs["consistency_weight"] for s in (0, 5, 20)]
    assert weights == pytest.approx([0.0, 5.0, 10.0])


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: Mixup(k=1), r"k \(number of points to mix\) must be an int >= 2"),
        (lambda: Mixup(alpha=-1.0), r"alpha \(Dirichlet concentration\) must be a finite number >= 0"),
        (lambda: Mixup(alpha=float("nan")), r"alpha \(Dirichlet concentration\) must be a finite number >= 0"),
        (lambda: ICT(sup_alpha=-0.5), r"sup_alpha \(Dirichlet concentration\) must be a finite number >= 0"),
        (lambda: Mixup(k=3, cutmix_alpha=1.0, num_classes=10), r"k must be 2 with cutmix_alpha > 0"),
        (lambda: Mixup(cutmix_alpha=1.0), r"num_classes is required"),
        (lambda: ManifoldMixup(layers=()), r"layers must name at least one layer"),
        (lambda: ICT(target="soft"), r"target must be one of 'probs', 'logits'"),
        (lambda: ICT(distance="l1"), r"distance must be one of"),
        (lambda: ICT(teacher_mode="frozen"), r"teacher_mode must be one of"),
    ],
)
def test_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_ict_without_teacher_is_an_error():
    with pytest.raises(ValueError, match="ICT needs the EMA teacher"):
        ICT().loss(_model(), _batch(), _ctx())


@pytest.mark.parametrize("supervised", ["plain", "mixup"])
def test_ict_joint_forward_equals_separate_forwards_in_eval_mode(supervised):
    # Without batch statistics every example's logits depend on that example alone, so one pass on the
    # concatenation is the same computation as two passes; the random draws happen in the same order too.
    model, batch = _model(), _batch()
    teacher = EMATeacher(_model(seed=1))
    losses = [ICT(k=3, supervised=supervised, teacher_mode="eval", joint_forward=joint).loss(
        model, batch, _ctx(seed=3, teacher=teacher)) for joint in (False, True)]
    assert torch.equal(losses[0].loss, losses[1].loss)
    assert torch.equal(losses[0].logs["loss/consistency"], losses[1].logs["loss/consistency"])


def test_ict_joint_forward_in_train_mode_normalises_with_shared_batch_statistics():
    model, batch = _model().train(), _batch()
    teacher = EMATeacher(_model(seed=1))
    separate = ICT(k=2, teacher_mode="eval").loss(model, batch, _ctx(seed=3, teacher=teacher)).loss
    joint = ICT(k=2, teacher_mode="eval", joint_forward=True).loss(model, batch, _ctx(seed=3, teacher=teacher)).loss
    # Batch norm sees the union of the labeled and mixed batches: a different function, so a different loss.
    assert not torch.allclose(separate, joint)
    plan = sample_mix_plan(8, 2, 1.0, generator=torch.Generator().manual_seed(3))
    logits = model(torch.cat([batch.x_l, plan.apply(batch.x_u)]))
    expected = F.cross_entropy(logits[:6], batch.y_l) + 100.0 * ict_consistency(logits[6:], teacher(batch.x_u), plan)
    assert torch.allclose(joint, expected)


def test_ict_joint_forward_must_be_a_bool():
    with pytest.raises(TypeError, match="joint_forward must be a bool"):
        ICT(joint_forward="yes")


# ------------------------------------------------------------------------------------------ registry
def test_every_registered_method_builds_itself_from_its_config_section():
    from ssl_mix.config import MethodConfig
    from ssl_mix.experiment import build_method
    from ssl_mix.methods import METHODS

    assert list(METHODS) == ["erm", "mixup", "manifold-mixup", "ict", "fixmatch", "mixmatch"]
    for name, cls in METHODS.items():
        method = build_method(MethodConfig(name=name, k=3, alpha=0.5), num_classes=10, total_steps=100)
        assert type(method) is cls and cls.name == name
    ict = build_method(MethodConfig(name="ict", k=4, ramp="linear", ramp_fraction=0.4, consistency_weight=10.0),
                       num_classes=10, total_steps=100)
    assert (ict.k, ict.schedule.ramp_steps, ict.schedule(100)) == (4, 40, 10.0)
    manifold = build_method(MethodConfig(name="manifold-mixup", mix_layers=("input", 1)), num_classes=10,
                            total_steps=1)
    assert manifold.layers == ("input", 1)


def test_a_registered_method_is_known_to_the_config_checks_and_builder():
    from ssl_mix.config import MethodConfig
    from ssl_mix.methods import METHODS, Method, method_class, register_method

    @register_method
    class Twice(ERM):
        name = "twice-erm"
        uses_teacher = True

    try:
        assert method_class("twice-erm") is Twice and list(METHODS)[-1] == "twice-erm"
        assert MethodConfig(name="ict", teacher_bn="own").teacher_bn == "own"
        with pytest.raises(ValueError, match=r"needs a method that runs the teacher \(ict, twice-erm\)"):
            MethodConfig(name="erm", teacher_bn="own")
        with pytest.raises(ValueError, match="method name 'twice-erm' of Again is taken by Twice"):
            register_method(type("Again", (ERM,), {"name": "twice-erm"}))
    finally:
        METHODS.pop("twice-erm")
    with pytest.raises(ValueError, match="method name 'method' of Unnamed is the base class's placeholder"):
        register_method(type("Unnamed", (Method,), {}))
    with pytest.raises(TypeError, match="register_method takes a subclass of ssl_mix.methods.Method, got"):
        register_method(object)
    with pytest.raises(NotImplementedError):
        Method.from_config(MethodConfig(), num_classes=2, total_steps=1)


def test_the_method_names_known_without_torch_are_the_registry_s():
    from typing import get_args

    from ssl_mix.choices import METHOD_NAMES, MethodName
    from ssl_mix.methods import METHODS

    assert tuple(METHODS) == METHOD_NAMES == get_args(MethodName)


def test_ict_with_strong_student_views_mixes_them_against_the_weak_views_teacher():
    """student_view='strong': the student's mix is of the strong views (same weights), the target the same mix of
    the teacher's predictions on the weak views."""
    model, batch = _model(), _batch()
    strong = torch.randn_like(batch.x_u)
    batch = Batch(batch.x_l, batch.y_l, batch.x_u, (batch.x_u, strong))
    teacher = EMATeacher(_model(seed=1))
    method = ICT(k=3, alpha=0.5, schedule=ConsistencySchedule(max_weight=5.0, ramp="none"), teacher_mode="eval",
                 student_view="strong")
    out = method.loss(model, batch, _ctx(seed=3, teacher=teacher))
    plan = sample_mix_plan(8, 3, 0.5, generator=torch.Generator().manual_seed(3))
    sup = F.cross_entropy(model(batch.x_l), batch.y_l)
    cons = ict_consistency(model(plan.apply(strong)), teacher(batch.x_u), plan)
    assert torch.allclose(out.loss, sup + 5.0 * cons)
    weak = ICT(k=3, alpha=0.5, schedule=ConsistencySchedule(max_weight=5.0, ramp="none"), teacher_mode="eval")
    weak_consistency = weak.loss(model, batch, _ctx(seed=3, teacher=teacher)).logs["loss/consistency"]
    assert not torch.equal(weak_consistency, out.logs["loss/consistency"])


def test_ict_strong_student_view_errors():
    with pytest.raises(ValueError, match="student_view must be one of 'weak', 'strong'"):
        ICT(student_view="medium")
    model, batch = _model(), _batch()
    with pytest.raises(ValueError, match=r"needs the strong view .* batch.u_views\[1\]"):
        ICT(student_view="strong").loss(model, batch, _ctx(teacher=EMATeacher(_model(seed=1))))
