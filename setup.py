from setuptools import find_packages, setup

setup(
    name="diffusers-pdae",
    version="0.1.0",
    description="PDAE for diffusers: turn a pre-trained UNet2DModel into an autoencoder (Zhang, Zhao & Lin 2022)",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["diffusers_pdae", "diffusers_pdae.*"]),
    # The bundled MNIST digits and checkpoints, so they load after a non-editable install too.
    package_data={
        "diffusers_pdae": ["bundled/*.npz", "bundled/*/*.json", "bundled/*/*/*.json", "bundled/*/*/*.safetensors"]
    },
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.1",
        "diffusers>=0.30",
        "accelerate>=0.30",
        # PDAETransformersEncoder: any transformers vision backbone as the encoder.
        "transformers>=4.40",
        "datasets>=2.18",
        "safetensors",
        "huggingface_hub",
        "numpy",
        "Pillow",
        "tqdm",
        # PSNR and SSIM (diffusers_pdae.evaluation.metrics).
        "torchmetrics>=1.0",
    ],
    extras_require={
        "dev": ["pytest", "pytest-xdist", "ruff", "selenium>=4.20"],
        # torchdata: the stateful DataLoader that lets a --streaming run resume where its stream stopped.
        "train": ["tensorboard", "torchdata>=0.8"],
        "eval": ["scikit-learn", "matplotlib"],
        # examples/app.py; scikit-learn fits its attribute directions.
        "app": ["gradio>=6,<7", "scikit-learn"],
        "docs": ["mkdocs>=1.6,<2", "mkdocs-material>=9.5", "mkdocstrings[python]>=0.26"],
    },
)
