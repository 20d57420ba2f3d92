import cleanroom.tee


def test_public_names_are_pinned() -> None:
    assert sorted(cleanroom.tee.__all__) == sorted([
        "REPORT_DATA_SIZE", "TEE_TYPES", "Bundle", "ConfigfsTsmPlatform", "EnclaveProcess",
        "Evidence", "GramineSgxPlatform", "Platform", "SimulatedLauncher", "SimulatedPlatform",
        "build_bundle", "manifest", "measure_bundle",
    ])  # fmt: skip
    for name in cleanroom.tee.__all__:
        assert getattr(cleanroom.tee, name) is not None


def test_platforms_satisfy_the_protocol() -> None:
    from cleanroom.tee import ConfigfsTsmPlatform, GramineSgxPlatform, Platform, SimulatedPlatform

    for cls in (ConfigfsTsmPlatform, GramineSgxPlatform, SimulatedPlatform):
        assert {"tee", "evidence"} <= set(dir(cls))
    assert "Guarantees" in (Platform.__doc__ or "")
