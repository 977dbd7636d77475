"""Dataset readers: a spec string (``digits`` or ``KIND:PATH``) becomes a validated :class:`Dataset`.

Every problem with the user's files is raised as :class:`DataError` with one
line naming the file and the problem, never as a numpy/Pillow/pickle traceback.
Nothing is downloaded and nothing is written into the user's data folders.
"""
from __future__ import annotations

import csv
import gzip
import os
import pickle
import zipfile
import zlib
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..errors import ConfigError, DataError
from .dataset import Dataset
from .images import is_image_file, load_images

#: the dataset kinds a spec may name, with a one-line description each (for help text and errors)
KINDS: dict[str, str] = {
    "digits": "scikit-learn's bundled 8x8 digits, 1,797 images, 10 classes (no path)",
    "mnist": "mnist:DIR with the four MNIST idx files, plain or .gz",
    "cifar10": "cifar10:DIR, the python-pickle CIFAR-10 release (cifar-10-batches-py)",
    "cifar100": "cifar100:DIR, the python-pickle CIFAR-100 release (cifar-100-python); fine labels, coarse kept",
    "svhn": "svhn:DIR with the cropped-digits SVHN files train_32x32.mat and test_32x32.mat (extra_32x32.mat is ignored)",
    "folder": "folder:DIR of class sub-folders of images, or DIR/train and DIR/test of them",
    "npz": "npz:FILE.npz with arrays x, y and optionally x_test, y_test, class_names",
    "csv": "csv:FILE.csv with a header row, a 'label' column and numeric feature columns",
}


def load_dataset(spec: str, seed: int = 0, test_fraction: float = 0.2) -> Dataset:
    """Read the dataset named by SPEC (``digits`` or ``KIND:PATH``).

    ``seed`` and ``test_fraction`` only matter for sources without their own
    test split (digits, a single class folder, npz without x_test, csv): the
    split is then stratified by class and the same for the same seed.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"the test fraction must lie strictly between 0 and 1, got {test_fraction}")
    kind, sep, path = spec.strip().partition(":")
    kind = kind.strip().lower()
    if kind not in KINDS:
        raise DataError(f"unknown dataset kind '{kind}' in '{spec}'; choose one of {', '.join(KINDS)}")
    if kind == "digits":
        if path.strip():
            raise DataError("the digits dataset is bundled with scikit-learn and takes no path: use 'digits'")
        return _read_digits(seed, test_fraction)
    if not path.strip():
        raise DataError(f"a dataset spec needs a path: {kind}:PATH")
    root = Path(path.strip()).expanduser()
    if not root.exists():
        raise DataError(f"{kind}: {root} does not exist")
    try:
        return _READERS[kind](kind, root, seed, test_fraction)
    except OSError as e:  # e.g. a permission denied while listing or reading: still the user's to fix
        raise DataError(f"{kind}: cannot read {e.filename or root} ({e.strerror or e})") from None


# ---------------------------------------------------------------- helpers


def _split(kind: str, y: np.ndarray, seed: int, test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Seeded train/test indices, stratified by label; a plain shuffle if a class is too small to stratify."""
    from sklearn.model_selection import train_test_split  # import cost only for sources that need a split

    idx, state = np.arange(len(y)), seed % 2**32
    try:
        tr, te = train_test_split(idx, test_size=test_fraction, random_state=state, stratify=y)
    except ValueError:
        try:
            tr, te = train_test_split(idx, test_size=test_fraction, random_state=state)
        except ValueError:
            raise DataError(
                f"{kind}: {len(y)} samples are too few to split into train and test (test fraction {test_fraction:g})"
            ) from None
    return np.sort(tr), np.sort(te)


def _encode_labels(what: str, values: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Map labels to 0..C-1 by sorted unique value; the original values become the class names.

    Integer labels that already are 0..C-1 keep their codes (names "0".."C-1").
    Strings that all look like integers are sorted numerically, so "10" comes after "9".
    """
    if values.dtype.kind in "US":
        strings = np.char.strip(values.astype(str))
        try:
            values = np.array([int(s) for s in strings], dtype=np.int64)
        except ValueError:
            uniq, codes = np.unique(strings, return_inverse=True)
            return codes.astype(np.int64).ravel(), [str(u) for u in uniq]
    elif values.dtype.kind == "f":
        if not np.all(np.isfinite(values)) or not np.all(values == np.round(values)):
            bad = values[~(np.isfinite(values) & (values == np.round(values)))][0]
            raise DataError(f"{what} must be integers or strings, found {bad}")
        values = values.astype(np.int64)
    elif values.dtype.kind not in "iub":
        raise DataError(f"{what} must be integers or strings, found dtype {values.dtype}")
    uniq, codes = np.unique(values.astype(np.int64), return_inverse=True)
    return codes.astype(np.int64).ravel(), [str(int(u)) for u in uniq]


def _tensor(a: np.ndarray) -> torch.Tensor:
    """A torch tensor owning a writable, contiguous copy when needed (frombuffer arrays are read-only)."""
    a = np.ascontiguousarray(a)
    if not a.flags.writeable:
        a = a.copy()
    return torch.from_numpy(a)


def _make(kind: str, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
          class_names: list[str], source: str, split: str, **kw: Any) -> Dataset:
    """Build and validate the Dataset, so every reader checks the same invariants."""
    ds = Dataset(
        name=kind,
        x_train=_tensor(x_train),
        y_train=_tensor(y_train.astype(np.int64)),
        x_test=_tensor(x_test),
        y_test=_tensor(y_test.astype(np.int64)),
        class_names=class_names,
        extras={"source": source, "test_split": split},
        **kw,
    )
    return ds.validate()


def _split_text(seed: int, test_fraction: float) -> str:
    return f"random {test_fraction:g} of the data, stratified by class where possible (seed {seed})"


def _need_dir(kind: str, root: Path) -> None:
    if not root.is_dir():
        raise DataError(f"{kind}: {root} is not a folder")


def _need_file(kind: str, root: Path) -> None:
    if not root.is_file():
        raise DataError(f"{kind}: {root} is not a file")


# ---------------------------------------------------------------- digits


def _read_digits(seed: int, test_fraction: float) -> Dataset:
    """scikit-learn's bundled digits (no download): 0..16 grey levels scaled to 0..255."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.rint(d.images * 255.0 / 16.0).astype(np.uint8)[:, None]
    y = d.target.astype(np.int64)
    tr, te = _split("digits", y, seed, test_fraction)
    return _make("digits", x[tr], y[tr], x[te], y[te], [str(i) for i in range(10)],
                 "sklearn.datasets.load_digits", _split_text(seed, test_fraction))


# ---------------------------------------------------------------- mnist

_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _find_mnist_file(root: Path, name: str) -> Path:
    """The file, plain or gzipped; also looks in torchvision's MNIST/raw layout."""
    for folder in (root, root / "MNIST" / "raw"):
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    raise DataError(f"mnist: expected the file {name}(.gz) in {root}, not found")


def read_idx(path: Path, magic: int, ndim: int) -> np.ndarray:
    """Parse an idx file (big-endian header: magic, then NDIM sizes; then uint8 data) and check its length."""
    what = "images" if ndim == 3 else "labels"
    try:
        raw = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"mnist: cannot read {path} ({e})") from None
    header = 4 * (1 + ndim)
    if len(raw) < header:
        raise DataError(f"mnist: {path} is truncated: {len(raw)} bytes, shorter than the idx header")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise DataError(f"mnist: {path} is not an idx {what} file (magic number {found}, expected {magic})")
    dims = [int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4)]
    need = header + int(np.prod(dims))
    if len(raw) != need:
        state = "truncated" if len(raw) < need else "longer than its header says"
        raise DataError(
            f"mnist: {path} is {state}: the header promises {'x'.join(map(str, dims))} {what} "
            f"({need} bytes) but the file has {len(raw)} bytes"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _read_mnist(kind: str, root: Path, seed: int, test_fraction: float) -> Dataset:
    """The four idx files of the MNIST release (also fits Fashion-MNIST and KMNIST)."""
    _need_dir(kind, root)
    arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for split, (img_name, lab_name) in _MNIST_FILES.items():
        img_path, lab_path = _find_mnist_file(root, img_name), _find_mnist_file(root, lab_name)
        x = read_idx(img_path, 2051, 3)[:, None]
        y = read_idx(lab_path, 2049, 1)
        if len(x) != len(y):
            raise DataError(f"mnist: {img_path} has {len(x)} images but {lab_path} has {len(y)} labels")
        arrays[split] = (x, y)
    (xtr, ytr), (xte, yte) = arrays["train"], arrays["test"]
    return _make(kind, xtr, ytr, xte, yte, [str(i) for i in range(10)], str(root), "from the source")


# ---------------------------------------------------------------- cifar

_CIFAR = {
    # kind: (sub-folder of the release, train files, test file, meta file)
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], "test_batch", "batches.meta"),
    "cifar100": ("cifar-100-python", ["train"], "test", "meta"),
}


def _unpickle(kind: str, path: Path) -> dict:
    """Load one file of the python release (pickled by Python 2, hence encoding="bytes")."""
    if not path.is_file():
        other = "cifar100" if kind == "cifar10" else "cifar10"
        hint = ""
        if (path.parent / _CIFAR[other][3]).is_file():
            hint = f" (this looks like the {other} release: use {other}:PATH)"
        raise DataError(f"{kind}: expected the file {path.name} in {path.parent}, not found{hint}")
    try:
        with open(path, "rb") as f:
            d = pickle.load(f, encoding="bytes")
    except Exception as e:  # unpickling corrupt data can raise nearly anything
        raise DataError(f"{kind}: cannot read {path} ({type(e).__name__}: {e})") from None
    if not isinstance(d, dict):
        raise DataError(f"{kind}: {path} does not hold a dictionary, is it a CIFAR batch file?")
    return d


def _entry(kind: str, d: dict, key: str, path: Path) -> Any:
    """A field of a CIFAR dictionary; the release uses bytes keys, re-pickled copies may use str."""
    for k in (key.encode(), key):
        if k in d:
            return d[k]
    raise DataError(f"{kind}: {path} has no entry '{key}'")


def _names(kind: str, d: dict, key: str, path: Path) -> list[str]:
    return [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in _entry(kind, d, key, path)]


def _cifar_batch(kind: str, path: Path, label_keys: tuple[str, ...]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Images (N, 3, 32, 32) and the label arrays named by LABEL_KEYS from one batch file."""
    d = _unpickle(kind, path)
    try:
        data = np.asarray(_entry(kind, d, "data", path))
        labels = [np.asarray(_entry(kind, d, k, path), dtype=np.int64).ravel() for k in label_keys]
    except (ValueError, TypeError) as e:
        raise DataError(f"{kind}: {path} holds malformed arrays ({e})") from None
    if data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"{kind}: 'data' in {path} has shape {data.shape}, expected (N, 3072)")
    if data.dtype != np.uint8:
        if data.dtype.kind not in "iu" or data.size and (data.min() < 0 or data.max() > 255):
            raise DataError(f"{kind}: 'data' in {path} must hold bytes 0..255, found dtype {data.dtype}")
    for k, lab in zip(label_keys, labels):
        if len(lab) != len(data):
            raise DataError(f"{kind}: {path} has {len(data)} images but {len(lab)} '{k}'")
    return data.astype(np.uint8).reshape(-1, 3, 32, 32), labels


def _coarse_of_class(kind: str, fine: np.ndarray, coarse: np.ndarray, n_fine: int, n_coarse: int) -> list[int]:
    """The coarse label of each fine class, read off the (fine, coarse) pairs; they must agree."""
    result: list[int] = []
    for c in range(n_fine):
        seen = np.unique(coarse[fine == c])
        if len(seen) == 0:
            raise DataError(f"{kind}: fine class {c} never occurs, so its coarse class is unknown")
        if len(seen) > 1:
            raise DataError(f"{kind}: fine class {c} is filed under several coarse classes {seen.tolist()}")
        if not 0 <= seen[0] < n_coarse:
            raise DataError(f"{kind}: coarse label {seen[0]} is out of range for {n_coarse} coarse classes")
        result.append(int(seen[0]))
    return result


def _read_cifar(kind: str, root: Path, seed: int, test_fraction: float) -> Dataset:
    """CIFAR-10 / CIFAR-100 python release; PATH may also be the folder that contains it."""
    _need_dir(kind, root)
    sub, train_files, test_file, meta_file = _CIFAR[kind]
    if not (root / meta_file).is_file() and (root / sub).is_dir():
        root = root / sub
    keys = ("labels",) if kind == "cifar10" else ("fine_labels", "coarse_labels")
    meta_path = root / meta_file
    meta = _unpickle(kind, meta_path)
    parts = [_cifar_batch(kind, root / f, keys) for f in train_files]
    x_train = np.concatenate([p[0] for p in parts])
    y_train = [np.concatenate([p[1][i] for p in parts]) for i in range(len(keys))]
    x_test, y_test = _cifar_batch(kind, root / test_file, keys)
    if kind == "cifar10":
        names = _names(kind, meta, "label_names", meta_path)
        return _make(kind, x_train, y_train[0], x_test, y_test[0], names, str(root), "from the source")
    names = _names(kind, meta, "fine_label_names", meta_path)
    coarse_names = _names(kind, meta, "coarse_label_names", meta_path)
    ds = _make(kind, x_train, y_train[0], x_test, y_test[0], names, str(root), "from the source")
    # read off the train arrays, plus the test arrays (they must agree) for fine classes absent from train
    fine = np.concatenate([y_train[0], y_test[0]])
    coarse = np.concatenate([y_train[1], y_test[1]])
    ds.coarse_of_class = _coarse_of_class(kind, fine, coarse, len(names), len(coarse_names))
    ds.extras["coarse_names"] = coarse_names
    return ds


# ---------------------------------------------------------------- svhn

_SVHN_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}


def _svhn_split(kind: str, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) uint8 and labels 0..9 from one SVHN .mat file (X: 32x32x3xN, y: Nx1, 10 = digit 0)."""
    from scipy.io import loadmat  # imported here: only SVHN needs it

    if not path.is_file():
        raise DataError(f"{kind}: expected the file {path.name} in {path.parent}, not found")
    try:
        mat = loadmat(path, variable_names=["X", "y"])
    except NotImplementedError:  # scipy's answer to MATLAB v7.3 (HDF5) files
        raise DataError(f"{kind}: {path} is a MATLAB v7.3 (HDF5) file; expected the original SVHN release (MATLAB v5)") from None
    except Exception as e:  # a corrupt or non-MATLAB file can raise nearly anything inside scipy
        raise DataError(f"{kind}: cannot read {path} ({type(e).__name__}: {e})") from None
    for need in ("X", "y"):
        if need not in mat:
            raise DataError(f"{kind}: {path} has no variable '{need}'")
    x, y = np.asarray(mat["X"]), np.asarray(mat["y"])
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3):
        raise DataError(f"{kind}: 'X' in {path} has shape {x.shape}, expected (32, 32, 3, N)")
    if x.dtype != np.uint8:
        raise DataError(f"{kind}: 'X' in {path} must hold bytes 0..255, found dtype {x.dtype}")
    y = y.ravel()
    if y.shape[0] != x.shape[3]:
        raise DataError(f"{kind}: {path} has {x.shape[3]} images but {y.shape[0]} labels")
    if y.dtype.kind not in "iuf":
        raise DataError(f"{kind}: labels 'y' in {path} must be numbers 1..10, found dtype {y.dtype}")
    ok = (y >= 1) & (y <= 10) & (y == np.round(y))
    if not np.all(ok):
        raise DataError(f"{kind}: label {y[~ok][0]} in {path} is not 1..10 (10 stands for the digit 0)")
    y = y.astype(np.int64) % 10
    return x.transpose(3, 2, 0, 1), y


def _read_svhn(kind: str, root: Path, seed: int, test_fraction: float) -> Dataset:
    """The cropped-digits release (Format 2): train_32x32.mat and test_32x32.mat; label 10 is the digit 0."""
    _need_dir(kind, root)
    x_train, y_train = _svhn_split(kind, root / _SVHN_FILES["train"])
    x_test, y_test = _svhn_split(kind, root / _SVHN_FILES["test"])
    return _make(kind, x_train, y_train, x_test, y_test, [str(i) for i in range(10)], str(root), "from the source")


# ---------------------------------------------------------------- folder


def _class_dirs(root: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))


def _list_images(kind: str, root: Path, classes: list[str], require_each: bool) -> tuple[list[str], list[int]]:
    """Image files under ROOT/<class>/, sorted, with their class index."""
    files: list[str] = []
    labels: list[int] = []
    for c, name in enumerate(classes):
        folder = root / name
        found = sorted(e.path for e in os.scandir(folder) if e.is_file() and is_image_file(e.name)) \
            if folder.is_dir() else []
        if require_each and not found:
            raise DataError(
                f"{kind}: class folder {folder} has no images (.jpg, .jpeg, .png, .bmp, .gif or .webp)"
            )
        files += found
        labels += [c] * len(found)
    return files, labels


def _read_folder(kind: str, root: Path, seed: int, test_fraction: float) -> Dataset:
    """Class sub-folders of images; DIR/train and DIR/test (or DIR/val) give the split, else a seeded one."""
    _need_dir(kind, root)
    test_dir = next((root / t for t in ("test", "val") if (root / t).is_dir()), None)
    if (root / "train").is_dir() and test_dir is not None:
        classes = _class_dirs(root / "train")
        test_classes = _class_dirs(test_dir)
        if not classes:
            raise DataError(f"{kind}: {root / 'train'} has no class sub-folders (expected train/<class>/<image>)")
        extra = sorted(set(test_classes) - set(classes))
        missing = sorted(set(classes) - set(test_classes))
        if extra or missing:
            raise DataError(
                f"{kind}: the class folders of {root / 'train'} and {test_dir} differ "
                f"(only in train: {', '.join(missing) or '-'}; only in {test_dir.name}: {', '.join(extra) or '-'})"
            )
        tr_files, tr_labels = _list_images(kind, root / "train", classes, require_each=True)
        te_files, te_labels = _list_images(kind, test_dir, classes, require_each=False)
        if not te_files:
            raise DataError(f"{kind}: {test_dir} holds no images")
        x = load_images(tr_files + te_files)
        n = len(tr_files)
        return _make(kind, x[:n], np.array(tr_labels), x[n:], np.array(te_labels), classes,
                     str(root), "from the source")
    classes = _class_dirs(root)
    if not classes:
        raise DataError(f"{kind}: {root} has no class sub-folders (expected {root}/<class>/<image>)")
    files, labels = _list_images(kind, root, classes, require_each=True)
    x, y = load_images(files), np.array(labels, dtype=np.int64)
    tr, te = _split(kind, y, seed, test_fraction)
    return _make(kind, x[tr], y[tr], x[te], y[te], classes, str(root), _split_text(seed, test_fraction))


# ---------------------------------------------------------------- npz


def _npz_inputs(kind: str, a: np.ndarray, name: str, path: Path) -> np.ndarray:
    """Images (N,C,H,W) uint8 from 3-d/4-d arrays (NHWC transposed), or float32 rows from 2-d arrays."""
    if a.dtype.kind not in "iufb":
        raise DataError(f"{kind}: array '{name}' in {path} must be numeric, found dtype {a.dtype}")
    if a.ndim == 2:
        return a.astype(np.float32)
    if a.ndim == 3:
        a = a[:, None]
    elif a.ndim == 4 and a.shape[1] not in (1, 3) and a.shape[3] in (1, 3):
        a = a.transpose(0, 3, 1, 2)
    elif a.ndim != 4:
        raise DataError(
            f"{kind}: array '{name}' in {path} has shape {a.shape}; expected (N, D) rows or "
            f"(N, H, W), (N, C, H, W) or (N, H, W, C) images"
        )
    if a.dtype == np.uint8 or a.size == 0:
        return a.astype(np.uint8)
    lo, hi = float(a.min()), float(a.max())
    if a.dtype.kind == "f" and np.isfinite(lo) and np.isfinite(hi) and 0.0 <= lo and hi <= 1.0:
        return np.rint(a * 255.0).astype(np.uint8)  # float images scaled to [0, 1]
    if 0 <= lo and hi <= 255 and (a.dtype.kind in "iub" or bool(np.all(a == np.round(a)))):
        return a.astype(np.uint8)  # whole numbers 0..255 stored in a wider type
    raise DataError(
        f"{kind}: image array '{name}' in {path} has values in [{lo:g}, {hi:g}]; "
        f"expected uint8 0..255 or floats in [0, 1]"
    )


def _read_npz(kind: str, root: Path, seed: int, test_fraction: float) -> Dataset:
    """Arrays x, y (and optional x_test, y_test, class_names) from a .npz archive."""
    _need_file(kind, root)
    try:
        z = np.load(root, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{kind}: cannot read {root} ({e})") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise DataError(f"{kind}: {root} is a single .npy array, not a .npz archive with arrays x and y")
    with z:
        for need in ("x", "y"):
            if need not in z.files:
                raise DataError(f"{kind}: {root} has no array '{need}' (it has: {', '.join(z.files) or 'none'})")
        if ("x_test" in z.files) != ("y_test" in z.files):
            raise DataError(f"{kind}: {root} must have both 'x_test' and 'y_test' or neither")
        try:
            arrays = {k: z[k] for k in ("x", "y", "x_test", "y_test", "class_names") if k in z.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
            raise DataError(f"{kind}: cannot read {root} ({e})") from None

    has_test = "x_test" in arrays
    xs = [_npz_inputs(kind, arrays["x"], "x", root)]
    ys = [arrays["y"]]
    if has_test:
        xs.append(_npz_inputs(kind, arrays["x_test"], "x_test", root))
        ys.append(arrays["y_test"])
    for x, y, (xn, yn) in zip(xs, ys, (("x", "y"), ("x_test", "y_test"))):
        if y.ndim == 2 and y.shape[1] == 1:
            y = y.ravel()
        if y.ndim != 1:
            raise DataError(f"{kind}: labels '{yn}' in {root} must be 1-d, got shape {y.shape}")
        if len(x) != len(y):
            raise DataError(f"{kind}: {root} has {len(x)} rows in '{xn}' but {len(y)} labels in '{yn}'")
    ys = [y.ravel() for y in ys]
    if "class_names" in arrays:
        names = [str(n) for n in arrays["class_names"].ravel()]
        if any(y.dtype.kind not in "iu" for y in ys):
            raise DataError(f"{kind}: with 'class_names', the labels in {root} must be integer class indices")
        codes = [y.astype(np.int64) for y in ys]  # range checked by Dataset.validate
    else:
        all_codes, names = _encode_labels(f"{kind}: the labels in {root}", np.concatenate(ys))
        codes = [all_codes[: len(ys[0])], all_codes[len(ys[0]):]]
    if has_test:
        return _make(kind, xs[0], codes[0], xs[1], codes[1], names, str(root), "from the source")
    x, y = xs[0], codes[0]
    tr, te = _split(kind, y, seed, test_fraction)
    return _make(kind, x[tr], y[tr], x[te], y[te], names, str(root), _split_text(seed, test_fraction))


# ---------------------------------------------------------------- csv


def _read_csv(kind: str, root: Path, seed: int, test_fraction: float) -> Dataset:
    """A header row, a 'label' column and numeric feature columns; rows become float32 features."""
    _need_file(kind, root)
    try:
        with open(root, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = [h.strip() for h in next(reader, [])]
            if "label" not in header:
                cols = ", ".join(header[:20]) + (", ..." if len(header) > 20 else "")
                raise DataError(f"{kind}: {root} has no column named 'label' (columns: {cols or 'none'})")
            li = header.index("label")
            rows, lines = [], []
            for row in reader:
                if not row or all(not c.strip() for c in row):
                    continue
                if len(row) != len(header):
                    raise DataError(
                        f"{kind}: {root} line {reader.line_num} has {len(row)} fields but the header has {len(header)}"
                    )
                rows.append(row)
                lines.append(reader.line_num)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{kind}: cannot read {root} ({e})") from None
    if not rows:
        raise DataError(f"{kind}: {root} has no data rows")
    if len(header) < 2:
        raise DataError(f"{kind}: {root} has no feature columns besides 'label'")
    labels = np.array([r[li].strip() for r in rows])
    if (empty := np.flatnonzero(labels == "")).size:
        raise DataError(f"{kind}: {root} line {lines[empty[0]]} has an empty label")
    feats = [r[:li] + r[li + 1:] for r in rows]
    try:
        x = np.array(feats, dtype=np.float64)
    except ValueError:  # find the first bad cell to name it
        names = header[:li] + header[li + 1:]
        for r, line in zip(feats, lines):
            for value, col in zip(r, names):
                try:
                    float(value)
                except ValueError:
                    raise DataError(
                        f"{kind}: {root} line {line}, column '{col}': '{value}' is not a number"
                    ) from None
        raise
    y, class_names = _encode_labels(f"{kind}: the labels in {root}", labels)
    tr, te = _split(kind, y, seed, test_fraction)
    x = x.astype(np.float32)
    return _make(kind, x[tr], y[tr], x[te], y[te], class_names, str(root), _split_text(seed, test_fraction))


_READERS: dict[str, Callable[[str, Path, int, float], Dataset]] = {
    "mnist": _read_mnist,
    "cifar10": _read_cifar,
    "cifar100": _read_cifar,
    "svhn": _read_svhn,
    "folder": _read_folder,
    "npz": _read_npz,
    "csv": _read_csv,
}
