"""Assert on what ``ociruntime check`` finds in a bundle, from Python (and the pytest plugin's
``oci_check`` fixture): ``check(bundle)`` -> ``ociruntime.check.Report``; ``assert_findings``
names the codes that must (and must not) be there."""
import os


def check(bundle, strict=False, plan=False, systemd=False):
    """The findings of ``ociruntime check`` for ``bundle`` (a path or a ``Bundle``; its config is
    written first) as an ``ociruntime.check.Report`` (``.findings``, ``.codes()``, ``.errors``,
    ``.warnings``, ``.exit_status()``, ``.as_dict()``)."""
    from ociruntime.check import check_bundle
    if hasattr(bundle, "write") and hasattr(bundle, "config"):
        bundle.write()
        bundle = bundle.path
    return check_bundle(os.fspath(bundle), strict=strict, want_plan=plan, systemd=systemd)


def assert_findings(bundle, present=(), absent=(), strict=False, only=None):
    """Every code of ``present`` is found (at least once), none of ``absent``; with ``only``, the
    set of codes is exactly ``only``. Returns the report."""
    rep = check(bundle, strict=strict)
    codes = set(rep.codes())
    text = "\n".join(repr(f) for f in rep.findings)
    missing = sorted(set(present) - codes)
    assert not missing, f"check did not report {missing}; it reported:\n{text}"
    unwanted = sorted(set(absent) & codes)
    assert not unwanted, f"check reported {unwanted}:\n{text}"
    if only is not None:
        assert codes == set(only), f"check reported {sorted(codes)}, expected exactly {sorted(only)}:\n{text}"
    return rep
