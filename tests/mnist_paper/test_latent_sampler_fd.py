"""examples/mnist_paper/latent_sampler_fd.py on the bundled pipeline, with few codes."""

from .conftest import load_study_script


def test_sampled_codes_are_further_from_the_test_codes_than_real_codes_and_a_seed_repeats(capsys):
    script = load_study_script("latent_sampler_fd")
    argv = ["--num_codes", "300", "--num_inference_steps", "10"]
    distances = script.main(argv)
    assert set(distances) == {"train codes", "sampled codes, eta 0", "sampled codes, eta 1"}
    assert 0 < distances["train codes"] < distances["sampled codes, eta 0"] < 5
    assert script.main(argv) == distances
    assert "sampled codes, eta 1" in capsys.readouterr().out
