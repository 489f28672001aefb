#!/usr/bin/env python3
"""PhotoEnhance Gateway: resident GFPGAN engine process (engine protocol v1, JSON lines over stdio).

Loads `gfpgan.GFPGANer` once per model version (at most --max-models resident, least recently used evicted first),
optionally with a RealESRGAN x2plus background upsampler, and handles `job` / `cancel` / `shutdown` messages from the
worker on stdin. stdout carries protocol messages only, one JSON object per line; everything else (our logs, and the
prints of GFPGAN / Real-ESRGAN, which write progress to stdout) goes to stderr.

    python photoenhance_gfpgan.py --model-dir /opt/models [--device auto|cuda|cpu] [--max-models 1]
        [--default-version 1.4] [--half | --no-half] [--bg-upsampler auto|realesrgan|none]
    python photoenhance_gfpgan.py --check --model-dir /opt/models      (doctor: one JSON object, exit 0 if usable)

Dependencies: the standard library, numpy, cv2 and the GFPGAN stack (torch, basicsr, facexlib, gfpgan, realesrgan).
See engines/gfpgan/README.md for setting it up, the weights it needs and how per-job scale is handled.
"""
import argparse
import collections
import gc
import importlib
import importlib.metadata
import json
import os
import pickle
import queue
import signal
import sys
import threading
import time
import traceback
import types

ADAPTER_VERSION = '1.0.0'
PROTOCOL_VERSION = 1
ENGINE_NAME = 'gfpgan'

# version -> how GFPGAN's inference_gfpgan.py builds it, and where its weights come from
VERSIONS = collections.OrderedDict([
    ('1', {'arch': 'original', 'channel_multiplier': 1, 'file': 'GFPGANv1.pth',
           'url': 'https://github.com/TencentARC/GFPGAN/releases/download/v0.1.0/GFPGANv1.pth'}),
    ('1.2', {'arch': 'clean', 'channel_multiplier': 2, 'file': 'GFPGANCleanv1-NoCE-C2.pth',
             'url': 'https://github.com/TencentARC/GFPGAN/releases/download/v0.2.0/GFPGANCleanv1-NoCE-C2.pth'}),
    ('1.3', {'arch': 'clean', 'channel_multiplier': 2, 'file': 'GFPGANv1.3.pth',
             'url': 'https://github.com/TencentARC/GFPGAN/releases/download/v1.3.0/GFPGANv1.3.pth'}),
    ('1.4', {'arch': 'clean', 'channel_multiplier': 2, 'file': 'GFPGANv1.4.pth',
             'url': 'https://github.com/TencentARC/GFPGAN/releases/download/v1.3.0/GFPGANv1.4.pth'}),
    ('RestoreFormer', {'arch': 'RestoreFormer', 'channel_multiplier': 2, 'file': 'RestoreFormer.pth',
                       'url': 'https://github.com/TencentARC/GFPGAN/releases/download/v1.3.4/RestoreFormer.pth'}),
])
BG_WEIGHTS = {'file': 'RealESRGAN_x2plus.pth',
              'url': 'https://github.com/xinntao/Real-ESRGAN/releases/download/v0.2.1/RealESRGAN_x2plus.pth'}
# GFPGANer builds facexlib's FaceRestoreHelper with model_rootpath='gfpgan/weights', relative to the working directory.
# The adapter constructs GFPGANer with the model directory as working directory, so these live in <model-dir>/gfpgan/weights.
FACEXLIB_SUBDIR = os.path.join('gfpgan', 'weights')
FACEXLIB_WEIGHTS = [
    {'file': 'detection_Resnet50_Final.pth',
     'url': 'https://github.com/xinntao/facexlib/releases/download/v0.1.0/detection_Resnet50_Final.pth'},
    {'file': 'parsing_parsenet.pth',
     'url': 'https://github.com/xinntao/facexlib/releases/download/v0.2.2/parsing_parsenet.pth'},
]

OPTIONS = ['scale', 'version', 'weight', 'onlyCenterFace', 'aligned', 'bgUpsampler', 'bgTile', 'format', 'quality']
SCALES = [1, 2, 4]
FORMATS = {'png': '.png', 'jpeg': '.jpg', 'webp': '.webp'}
DEFAULTS = {'scale': 2, 'version': '1.4', 'weight': 0.5, 'onlyCenterFace': False, 'aligned': False,
            'bgUpsampler': 'realesrgan', 'bgTile': 400, 'format': 'png', 'quality': 92}
# RealESRGAN x2plus runs basicsr's pixel_unshuffle(scale=2), which asserts even tile sizes (tile + 2 x BG_TILE_PAD
# when padded), so every tile the adapter uses is even: user values are rounded down (not below MIN_USER_TILE) and an
# OOM retry halves to an even size (not below MIN_RETRY_TILE).
MIN_USER_TILE = 32
MIN_RETRY_TILE = 64
BG_TILE_PAD = 10

# Failures that repeat identically on a retry (code or installation problems, not load): assertions such as
# pixel_unshuffle's, missing compiled ops (NameError: fused_act_ext), checkpoints without 'params' (KeyError) or that
# torch refuses to unpickle. A job failing with one of these is not retryable.
PERMANENT_ERRORS = (AssertionError, NameError, LookupError, AttributeError, TypeError, ImportError, NotImplementedError,
                    pickle.UnpicklingError)

# pip distribution names for the modules whose versions the adapter reports (cv2 ships under several names)
DISTRIBUTIONS = {
    'cv2': ('opencv-python', 'opencv-python-headless', 'opencv-contrib-python', 'opencv-contrib-python-headless'),
}

BASICSR_OPS_FIX = (
    "GFPGAN version 1 (the 'original' arch) needs basicsr's compiled CUDA ops (fused_act_ext, upfirdn2d_ext), which "
    '`pip install basicsr` does not build (the first face then fails with NameError: fused_act_ext). Fix, with nvcc '
    "from a CUDA toolkit matching torch's CUDA version installed: either reinstall basicsr with the ops compiled, "
    '`BASICSR_EXT=True {python} -m pip install --no-build-isolation --no-cache-dir --force-reinstall --no-deps '
    "basicsr`, or set BASICSR_JIT=True in the engine profile's env (compiles them at every start-up); or use version "
    '1.2, 1.3 or 1.4 (engines/gfpgan/README.md)')

# pip package to install for each import the adapter needs (doctor output)
IMPORTS = [
    ('numpy', 'numpy<2'),
    ('cv2', 'opencv-python'),
    ('torch', 'torch torchvision --index-url https://download.pytorch.org/whl/cu121'),
    ('basicsr', 'basicsr'),
    ('facexlib', 'facexlib'),
    ('gfpgan', 'gfpgan'),
    ('realesrgan', 'realesrgan'),
]


# ----------------------------------------------------------------------------------------------------------- output

class Protocol:
    """Owns the real stdout. After this, fd 1 and sys.stdout point at stderr, so library prints (GFPGAN and Real-ESRGAN
    print progress and swallowed errors to stdout) and C-level writes cannot corrupt the protocol stream."""

    def __init__(self):
        sys.stdout.flush()
        fd = os.dup(1)
        os.dup2(2, 1)
        sys.stdout = sys.stderr
        self._out = os.fdopen(fd, 'w', encoding='utf-8', newline='\n')
        self._lock = threading.Lock()

    def send(self, msg):
        line = json.dumps(msg, separators=(',', ':'), allow_nan=False, default=str)
        with self._lock:
            try:
                self._out.write(line + '\n')
                self._out.flush()
            except (BrokenPipeError, OSError):
                # The worker is gone; nothing is listening for results.
                os._exit(0)


def log(message, level='info'):
    sys.stderr.write(f'{time.strftime("%H:%M:%S")} gfpgan[{os.getpid()}] {level}: {message}\n')
    sys.stderr.flush()


# --------------------------------------------------------------------------------------------------------- helpers

class JobFailure(Exception):
    def __init__(self, code, message, retryable=None):
        super().__init__(message)
        self.code = code
        self.retryable = retryable


class Canceled(Exception):
    pass


class StartFailure(Exception):
    pass


def rss_bytes():
    try:
        with open('/proc/self/statm') as fh:
            return int(fh.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')
    except (OSError, ValueError, IndexError):
        return None


def peak_rss_bytes():
    try:
        with open('/proc/self/status') as fh:
            for line in fh:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def install_functional_tensor_shim():
    """basicsr 1.4.2 imports torchvision.transforms.functional_tensor, which torchvision 0.17 removed. Provide the one
    function it needs from its new home so `import basicsr` works on current torchvision. Returns True if installed."""
    try:
        importlib.import_module('torchvision.transforms.functional_tensor')
        return False
    except ImportError:
        pass
    try:
        functional = importlib.import_module('torchvision.transforms.functional')
    except ImportError:
        return False
    shim = types.ModuleType('torchvision.transforms.functional_tensor')
    shim.rgb_to_grayscale = functional.rgb_to_grayscale
    sys.modules['torchvision.transforms.functional_tensor'] = shim
    return True


def package_version(name):
    """The installed version of the package providing module `name`, from its metadata: gfpgan and realesrgan have
    no __version__ attribute (their `from .version import *` skips underscore names). Falls back to __version__."""
    for dist in DISTRIBUTIONS.get(name, (name,)):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
        except Exception:  # noqa: BLE001 (broken metadata must not stop start-up)
            break
    mod = sys.modules.get(name)
    v = getattr(mod, '__version__', None) if mod is not None else None
    return str(v) if v is not None else None


def basicsr_ops():
    """Whether basicsr's compiled CUDA ops are importable: a plain `pip install basicsr` silently lacks them, and then
    the 'original' arch (GFPGAN version 1) fails at its first face with NameError: fused_act_ext."""
    found = {}
    for key, module, attr in (('fusedAct', 'basicsr.ops.fused_act.fused_act', 'fused_act_ext'),
                              ('upfirdn2d', 'basicsr.ops.upfirdn2d.upfirdn2d', 'upfirdn2d_ext')):
        try:
            found[key] = hasattr(importlib.import_module(module), attr)
        except Exception:  # noqa: BLE001
            found[key] = False
    found['jit'] = os.environ.get('BASICSR_JIT') == 'True'
    return found


def facexlib_missing(model_dir):
    """facexlib's weights that are not in <model-dir>/gfpgan/weights, with the command that fetches each. facexlib
    would otherwise download them itself through torch.hub, with no timeout."""
    folder = os.path.join(model_dir, FACEXLIB_SUBDIR)
    missing = []
    for item in FACEXLIB_WEIGHTS:
        path = os.path.join(folder, item['file'])
        if not os.path.exists(path):  # facexlib's own test: it downloads only what does not exist
            missing.append(f'mkdir -p {folder} && curl -L -o {path} {item["url"]}')
    return missing


def load_error_fix(err, url):
    """What to do about an exception raised while loading a checkpoint."""
    text = str(err)
    if isinstance(err, pickle.UnpicklingError) and ('weights_only' in text or 'weights only' in text.lower()):
        return ('torch >= 2.6 loads checkpoints with weights_only=True and this file holds more than tensors: '
                f're-download the official file ({url}); only if you trust this file, set '
                "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 in the engine profile's env, or use torch < 2.6")
    if isinstance(err, KeyError):
        return f'the checkpoint has neither params_ema nor params (not a GFPGAN/Real-ESRGAN weights file): re-download {url}'
    return f're-download {url}'


def import_fix(module, error):
    pip = f'{sys.executable} -m pip install'
    if 'CUDA_HOME' in error or (os.environ.get('BASICSR_JIT') == 'True' and module in ('', 'basicsr', 'gfpgan')):
        return ('BASICSR_JIT=True makes basicsr compile its CUDA ops when it is imported, which needs nvcc: install the '
                "CUDA toolkit matching torch's CUDA version and set CUDA_HOME, or remove BASICSR_JIT from the engine "
                "profile's env (GFPGAN version 1 then needs basicsr built with BASICSR_EXT=True)")
    if 'libGL.so' in error or 'libgthread' in error or 'libglib' in error:
        return ('OpenCV needs system libraries: apt-get install -y libgl1 libglib2.0-0, or replace opencv-python with '
                f'`{pip} "opencv-python-headless<4.12"`')
    if 'functional_tensor' in error:
        return (f'basicsr needs torchvision.transforms.functional_tensor (removed in torchvision 0.17): either '
                f'`{pip} "torchvision<0.17"` with a matching torch, or edit basicsr/data/degradations.py to import '
                f'rgb_to_grayscale from torchvision.transforms.functional (see engines/gfpgan/README.md)')
    for mod, pkg in IMPORTS:
        if mod == module:
            return f'{pip} {pkg}'
    return f'{pip} {module}'


class OomWatch:
    """Wraps a model callable (GFPGANer.gfpgan, RealESRGANer.model) and records CUDA out-of-memory errors raised
    inside it, re-raising them. GFPGAN and Real-ESRGAN catch RuntimeError around these calls and carry on (an
    unrestored face, a background tile never written); the record lets the adapter notice an OOM they swallowed."""

    def __init__(self, inner, is_oom):
        self.__dict__['_inner'] = inner
        self.__dict__['_is_oom'] = is_oom
        self.__dict__['hits'] = []

    def __call__(self, *args, **kwargs):
        try:
            return self._inner(*args, **kwargs)
        except BaseException as err:  # noqa: B902 (recorded and re-raised)
            if self._is_oom(err):
                self.hits.append(err)
            raise

    def __getattr__(self, name):
        return getattr(self.__dict__['_inner'], name)

    def __setattr__(self, name, value):
        setattr(self.__dict__['_inner'], name, value)


# ----------------------------------------------------------------------------------------------------- image I/O

def sniff(data):
    if data[:3] == b'\xff\xd8\xff':
        return 'jpeg'
    if data[:8] == b'\x89PNG\r\n\x1a\n':
        return 'png'
    if data[:4] == b'RIFF' and data[8:12] == b'WEBP':
        return 'webp'
    if data[:2] == b'BM':
        return 'bmp'
    if data[:4] in (b'II*\x00', b'MM\x00*'):
        return 'tiff'
    return None


def even_tile(tile, minimum):
    """The background tile to use: even (RRDBNet x2 asserts even sizes in pixel_unshuffle), at least `minimum`."""
    return max(minimum, int(tile) - int(tile) % 2)


def clear_traceback(err):
    """Clear the local variables of the frames an exception's traceback (and its cause/context) references."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if err.__traceback__ is not None:
            traceback.clear_frames(err.__traceback__)
        err = err.__cause__ or err.__context__


def read_image(path, cv2, np):
    """Decode the input as 8-bit BGR (like GFPGAN's cv2.imread(path, IMREAD_COLOR)), refusing truncated files that
    decoders would otherwise fill with grey."""
    if not os.path.isfile(path):
        raise JobFailure('INPUT_MISSING', f'input file not found: {path}', retryable=False)
    with open(path, 'rb') as fh:
        data = fh.read()
    if not data:
        raise JobFailure('IMAGE_UNREADABLE', f'input file is empty: {path}', retryable=False)
    kind = sniff(data)
    if kind == 'jpeg' and data.rfind(b'\xff\xd9') < data.rfind(b'\xff\xda'):
        raise JobFailure('IMAGE_UNREADABLE', 'JPEG is truncated: no end-of-image marker after the last scan',
                         retryable=False)
    if kind == 'png' and b'IEND' not in data[-64:]:
        raise JobFailure('IMAGE_UNREADABLE', 'PNG is truncated: no IEND chunk at the end', retryable=False)
    if kind == 'webp' and len(data) < 8 + int.from_bytes(data[4:8], 'little'):
        raise JobFailure('IMAGE_UNREADABLE', 'WebP is truncated: shorter than its RIFF header says', retryable=False)
    img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if img is None or img.size == 0:
        what = kind or 'unknown format'
        raise JobFailure('IMAGE_UNREADABLE', f'cannot decode the input image ({what}, {len(data)} bytes)',
                         retryable=False)
    return img, kind


def encode_image(img, fmt, quality, cv2):
    if fmt == 'jpeg':
        params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    elif fmt == 'webp':
        params = [cv2.IMWRITE_WEBP_QUALITY, int(quality)]
    else:
        params = [cv2.IMWRITE_PNG_COMPRESSION, 3]
    ok, buf = cv2.imencode(FORMATS[fmt], img, params)
    if not ok:
        raise JobFailure('ENGINE_FAILED', f'cv2.imencode could not write {fmt}', retryable=False)
    return buf.tobytes()


def write_atomic(path, data):
    folder = os.path.dirname(path) or '.'
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f'.{os.path.basename(path)}.{os.getpid()}.tmp')
    try:
        with open(tmp, 'wb') as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def format_from_path(path):
    ext = os.path.splitext(path)[1].lower()
    return {'.jpg': 'jpeg', '.jpeg': 'jpeg', '.png': 'png', '.webp': 'webp'}.get(ext)


def normalize_options(raw, output_path, default_version):
    o = dict(DEFAULTS)
    o['version'] = default_version
    if raw is not None and not isinstance(raw, dict):
        raise JobFailure('INVALID_OPTION', 'options must be an object', retryable=False)
    for k, v in (raw or {}).items():
        if k in o and v is not None:
            o[k] = v

    def bad(field, allowed):
        raise JobFailure('INVALID_OPTION', f'option {field} must be {allowed}; received {json.dumps(o[field])}',
                         retryable=False)

    try:
        scale = float(o['scale'])
    except (TypeError, ValueError):
        bad('scale', 'one of 1, 2, 4')
    if scale not in SCALES:
        bad('scale', 'one of 1, 2, 4')
    o['scale'] = int(scale)
    o['version'] = str(o['version'])
    if o['version'] not in VERSIONS:
        bad('version', 'one of ' + ', '.join(VERSIONS))
    if isinstance(o['weight'], bool) or not isinstance(o['weight'], (int, float)) or not 0 <= o['weight'] <= 1:
        bad('weight', 'a number from 0 to 1')
    o['weight'] = float(o['weight'])
    for b in ('onlyCenterFace', 'aligned'):
        if not isinstance(o[b], bool):
            bad(b, 'true or false')
    if o['bgUpsampler'] not in ('realesrgan', 'none'):
        bad('bgUpsampler', 'realesrgan or none')
    if isinstance(o['bgTile'], bool) or not isinstance(o['bgTile'], int) or o['bgTile'] < 0:
        bad('bgTile', 'an integer >= 0 (0 = no tiling)')
    if o['format'] not in FORMATS:
        guessed = format_from_path(output_path)
        if o['format'] not in (None, 'auto') or guessed is None:
            bad('format', 'one of png, jpeg, webp')
        o['format'] = guessed
    if isinstance(o['quality'], bool) or not isinstance(o['quality'], int) or not 1 <= o['quality'] <= 100:
        bad('quality', 'an integer from 1 to 100')
    return o


# ------------------------------------------------------------------------------------------------------- engine

class Engine:
    def __init__(self, args, proto):
        self.args = args
        self.proto = proto
        self.model_dir = os.path.abspath(args.model_dir)
        self.models = collections.OrderedDict()  # version -> GFPGANer, least recently used first
        self.face_watch = {}  # version -> OomWatch around GFPGANer.gfpgan
        self.bg = None
        self.bg_watch = None
        self.bg_note = None
        self.jobs = queue.Queue()
        self.canceled = set()
        self.lock = threading.Lock()
        self.current = None
        self.stopping = False  # shutdown message or stdin closed: finish what was sent, then exit
        self.terminating = False  # SIGTERM / SIGINT: cancel at the next stage boundary, then exit
        self.ready_sent = False

    # ---------------------------------------------------------------- start-up
    def start(self):
        try:
            install_functional_tensor_shim()
            import numpy as np
            import cv2
            import torch
            from basicsr.archs.rrdbnet_arch import RRDBNet
            from gfpgan import GFPGANer
            from realesrgan import RealESRGANer
        except Exception as err:  # noqa: BLE001 (any import failure stops start-up)
            name = getattr(err, 'name', None) or ''
            raise StartFailure(f'cannot import the GFPGAN stack with {sys.executable}: {type(err).__name__}: {err}. '
                               f'Fix: {import_fix(name, str(err))}; then run this script with --check')
        self.np, self.cv2, self.torch = np, cv2, torch
        self.GFPGANer, self.RealESRGANer, self.RRDBNet = GFPGANer, RealESRGANer, RRDBNet
        if not os.path.isdir(self.model_dir):
            raise StartFailure(f'model directory {self.model_dir} does not exist; create it and put the weights there '
                               '(engines/gfpgan/README.md lists them)')

        cuda = bool(torch.cuda.is_available())
        want = self.args.device
        if want == 'cuda' and not cuda:
            raise StartFailure('--device cuda was asked for but torch.cuda.is_available() is False: install a CUDA '
                               'build of torch and check nvidia-smi, or start with --device cpu')
        self.device_type = 'cuda' if (want == 'cuda' or (want == 'auto' and cuda)) else 'cpu'
        self.device = torch.device(self.device_type)
        self.gpu_name = None
        if self.device_type == 'cuda':
            try:
                self.gpu_name = torch.cuda.get_device_name(0)
            except Exception:  # noqa: BLE001
                self.gpu_name = None
        if self.device_type == 'cpu':
            if self.args.half:
                log('half precision needs CUDA; running the background upsampler in fp32 on CPU', 'warn')
            self.half = False
        else:
            self.half = True if self.args.half is None else bool(self.args.half)

        missing = facexlib_missing(self.model_dir)
        if missing:
            raise StartFailure(self.facexlib_message(missing))
        self.setup_bg()
        self.get_model(self.args.default_version)
        # From `ready` on, a signal means a graceful stop (the worker may signal as soon as it reads `ready`).
        signal.signal(signal.SIGTERM, self.on_signal)
        signal.signal(signal.SIGINT, self.on_signal)
        self.proto.send({
            'type': 'ready',
            'protocol': PROTOCOL_VERSION,
            'engine': ENGINE_NAME,
            'version': package_version('gfpgan') or 'unknown',
            'capabilities': {'options': OPTIONS, 'scales': SCALES, 'formats': list(FORMATS)},
            'info': self.info(),
        })
        self.ready_sent = True

    def setup_bg(self):
        mode = self.args.bg_upsampler
        if mode == 'none':
            self.bg_note = 'disabled by --bg-upsampler none'
            return
        if mode == 'auto' and self.device_type == 'cpu':
            self.bg_note = ('off on CPU (too slow, as GFPGAN itself does); start with --bg-upsampler realesrgan to '
                            'use it anyway')
            return
        path = os.path.join(self.model_dir, BG_WEIGHTS['file'])
        if not os.path.isfile(path):
            msg = f'background upsampler weights {path} are missing; download {BG_WEIGHTS["url"]} there'
            if mode == 'realesrgan':
                raise StartFailure(msg)
            self.bg_note = msg + ' (running without a background upsampler)'
            log(self.bg_note, 'warn')
            return
        model = self.RRDBNet(num_in_ch=3, num_out_ch=3, num_feat=64, num_block=23, num_grow_ch=32, scale=2)
        try:
            self.bg = self.RealESRGANer(scale=2, model_path=path, model=model, tile=DEFAULTS['bgTile'],
                                        tile_pad=BG_TILE_PAD, pre_pad=0, half=self.half, device=self.device)
        except Exception as err:  # noqa: BLE001
            if self.is_oom(err):
                raise
            raise StartFailure(f'cannot load the background upsampler from {path}: {type(err).__name__}: {err}. '
                               f'Fix: {load_error_fix(err, BG_WEIGHTS["url"])}')
        self.bg_watch = OomWatch(self.bg.model, self.is_oom)
        self.bg.model = self.bg_watch

    # ---------------------------------------------------------------- models
    def get_model(self, version):
        """Return (restorer, loaded_now, evicted_versions)."""
        if version in self.models:
            self.models.move_to_end(version)
            return self.models[version], False, []
        spec = VERSIONS[version]
        path = os.path.join(self.model_dir, spec['file'])
        if not os.path.isfile(path):
            raise JobFailure('ENGINE_FAILED', f'GFPGAN {version} weights {path} are missing; download '
                             f'{spec["url"]} into {self.model_dir}', retryable=False)
        # Checked before GFPGANer is built: facexlib would download missing weights (no timeout), and the original
        # arch would fail only at its first face.
        missing = facexlib_missing(self.model_dir)
        if missing:
            raise JobFailure('ENGINE_FAILED', self.facexlib_message(missing), retryable=False)
        if spec['arch'] == 'original':
            self.check_original_arch(version)
        evicted = []
        while len(self.models) >= self.args.max_models:
            old = next(iter(self.models))  # least recently used; no reference kept, so it can be freed
            del self.models[old]
            self.face_watch.pop(old, None)
            evicted.append(old)
        if evicted:
            self.free_memory()
            self.note(f'evicted GFPGAN {", ".join(evicted)} (--max-models {self.args.max_models})')
        t0 = time.monotonic()
        previous = os.getcwd()
        os.chdir(self.model_dir)  # GFPGANer finds facexlib's weights under ./gfpgan/weights
        try:
            restorer = self.GFPGANer(model_path=path, upscale=DEFAULTS['scale'], arch=spec['arch'],
                                     channel_multiplier=spec['channel_multiplier'], bg_upsampler=self.bg,
                                     device=self.device)
        except Exception as err:  # noqa: BLE001
            self.free_memory()
            if self.is_oom(err):
                raise JobFailure('ENGINE_GPU_OOM', f'out of GPU memory loading GFPGAN {version}: {err}', True)
            raise JobFailure('ENGINE_FAILED', f'cannot load GFPGAN {version} from {path}: {type(err).__name__}: '
                             f'{err}. Fix: {load_error_fix(err, spec["url"])}', retryable=False)
        finally:
            os.chdir(previous)
        if callable(getattr(restorer, 'gfpgan', None)):
            watch = OomWatch(restorer.gfpgan, self.is_oom)
            restorer.gfpgan = watch
            self.face_watch[version] = watch
        self.models[version] = restorer
        self.note(f'loaded GFPGAN {version} ({spec["file"]}, arch {spec["arch"]}) on {self.device_type} in '
                  f'{time.monotonic() - t0:.1f}s')
        return restorer, True, evicted

    def facexlib_message(self, missing):
        return ('facexlib\'s face detection/parsing weights are missing from '
                f'{os.path.join(self.model_dir, FACEXLIB_SUBDIR)} (facexlib would try to download them, with no timeout). '
                f'Fix: {"; ".join(missing)}')

    def check_original_arch(self, version):
        """The 'original' arch runs basicsr's compiled CUDA ops: refuse it up front where they cannot run."""
        if self.device_type != 'cuda':
            raise JobFailure('ENGINE_FAILED', f'GFPGAN {version} (the \'original\' arch) runs only on CUDA: basicsr\'s '
                             'fused_act op has no CPU implementation (GFPGAN would swallow the error and return '
                             'unrestored faces). Use version 1.2, 1.3 or 1.4 on CPU', retryable=False)
        ops = basicsr_ops()
        if not (ops['fusedAct'] and ops['upfirdn2d']):
            raise JobFailure('ENGINE_FAILED', BASICSR_OPS_FIX.format(python=sys.executable), retryable=False)

    def release_job_tensors(self):
        """Drop the background upsampler's last input and output: RealESRGANer keeps them as attributes (`img`,
        `output`) after enhance() returns or fails, holding GPU memory until the next job replaces them."""
        if self.bg is not None:
            for name in ('img', 'output'):
                if getattr(self.bg, name, None) is not None:
                    setattr(self.bg, name, None)

    def free_memory(self):
        gc.collect()
        if self.device_type == 'cuda':
            try:
                self.torch.cuda.empty_cache()
            except Exception as err:  # noqa: BLE001
                log(f'torch.cuda.empty_cache failed: {err}', 'warn')

    def is_oom(self, err):
        torch = getattr(self, 'torch', None)
        for holder in (getattr(torch, 'cuda', None), torch):
            cls = getattr(holder, 'OutOfMemoryError', None) if holder is not None else None
            if isinstance(cls, type) and isinstance(err, cls):
                return True
        if not isinstance(err, RuntimeError):
            return False
        text = str(err)
        return 'CUDA out of memory' in text or 'CUBLAS_STATUS_ALLOC_FAILED' in text or (
            'out of memory' in text.lower() and 'cuda' in text.lower())

    def memory(self):
        m = {'rssBytes': rss_bytes(), 'peakRssBytes': peak_rss_bytes()}
        if self.device_type == 'cuda':
            cuda = self.torch.cuda
            try:
                m['gpuAllocatedBytes'] = int(cuda.memory_allocated())
                m['gpuReservedBytes'] = int(cuda.memory_reserved())
                m['gpuPeakAllocatedBytes'] = int(cuda.max_memory_allocated())
                free, total = cuda.mem_get_info()
                m['gpuFreeBytes'], m['gpuTotalBytes'] = int(free), int(total)
            except Exception as err:  # noqa: BLE001
                log(f'cannot read GPU memory: {err}', 'warn')
        return m

    def info(self):
        return {
            'device': self.device_type,
            'gpuName': self.gpu_name,
            'half': self.half,
            'bgUpsampler': 'realesrgan' if self.bg is not None else 'none',
            **({'bgUpsamplerNote': self.bg_note} if self.bg_note else {}),
            'versionsLoaded': list(self.models),
            'defaultVersion': self.args.default_version,
            'maxModels': self.args.max_models,
            'modelDir': self.model_dir,
            'memory': self.memory(),
            'python': sys.version.split()[0],
            'interpreter': sys.executable,
            'packages': {n: package_version(n) for n in ('torch', 'basicsr', 'facexlib', 'gfpgan', 'realesrgan')},
            'adapter': ADAPTER_VERSION,
            'pid': os.getpid(),
        }

    # ---------------------------------------------------------------- messages
    def note(self, message, job_id=None, level='info'):
        log(message, level)
        if not self.ready_sent:  # `ready` is the first protocol message; before it, logs go to stderr only
            return
        msg = {'type': 'log', 'level': level, 'message': message}
        if job_id is not None:
            msg['id'] = job_id
        self.proto.send(msg)

    def progress(self, job_id, value, stage):
        self.proto.send({'type': 'progress', 'id': job_id, 'progress': value, 'stage': stage})

    def checkpoint(self, job_id):
        if self.terminating:
            raise Canceled()
        with self.lock:
            if job_id in self.canceled:
                raise Canceled()

    def read_stdin(self):
        for raw in sys.stdin.buffer:
            line = raw.decode('utf-8', 'replace').strip()
            if not line:
                continue
            try:
                msg = json.loads(line)
            except ValueError:
                self.note(f'ignored a line that is not JSON: {line[:200]}', level='warn')
                continue
            kind = msg.get('type') if isinstance(msg, dict) else None
            if kind == 'job':
                self.jobs.put(msg)
            elif kind == 'cancel':
                with self.lock:
                    if len(self.canceled) > 10000:  # cancels for jobs that had already ended
                        self.canceled.clear()
                    self.canceled.add(msg.get('id'))
                log(f'cancel requested for {msg.get("id")}')
            elif kind == 'shutdown':
                # Jobs sent before this still run; keep reading so a cancel for them still arrives.
                log('shutdown requested')
                self.shutdown_seen = True
                self.jobs.put(None)
            else:
                self.note(f'ignored an unknown message type {json.dumps(kind)}', level='warn')
        if not getattr(self, 'shutdown_seen', False):
            # EOF without `shutdown`: the worker died; nobody will commit this job, so stop now (no orphan).
            log('stdin closed without shutdown: the worker is gone; exiting now')
            os._exit(0)
        log('stdin closed: shutting down')
        self.jobs.put(None)

    def on_signal(self, signum, frame):
        if self.terminating:
            os._exit(128 + signum)
        # Only set a flag: a handler must not take locks the interrupted main thread may hold (the queue's, ours).
        self.terminating = True
        log(f'signal {signum}: canceling at the next stage boundary and exiting')

    def loop(self):
        threading.Thread(target=self.read_stdin, name='stdin', daemon=True).start()
        while True:
            if self.terminating:
                break
            try:
                item = self.jobs.get(timeout=0.25)
            except queue.Empty:
                continue
            if item is None:
                break
            if self.terminating:
                self.send_canceled(item.get('id'))
                continue
            self.run_job(item)
        # drop whatever arrived after shutdown
        while True:
            try:
                item = self.jobs.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                self.send_canceled(item.get('id'))

    def send_canceled(self, job_id):
        if isinstance(job_id, str):
            self.proto.send({'type': 'canceled', 'id': job_id})

    # ---------------------------------------------------------------- jobs
    def run_job(self, req):
        job_id = req.get('id')
        if not isinstance(job_id, str) or not job_id:
            self.note('ignored a job without an id', level='warn')
            return
        out_path = req.get('output')
        t_start = time.monotonic()
        timings = {}
        try:
            if not isinstance(req.get('input'), str) or not isinstance(out_path, str):
                raise JobFailure('ENGINE_FAILED', 'job needs input and output paths (strings)', retryable=False)
            o = normalize_options(req.get('options'), out_path, self.args.default_version)
            self.checkpoint(job_id)
            self.progress(job_id, 0.02, 'read')
            t = time.monotonic()
            img, _ = read_image(req['input'], self.cv2, self.np)
            timings['readMs'] = round((time.monotonic() - t) * 1000, 1)
            self.checkpoint(job_id)
            self.progress(job_id, 0.1, 'model')
            t = time.monotonic()
            restorer, loaded, evicted = self.get_model(o['version'])
            timings['modelMs'] = round((time.monotonic() - t) * 1000, 1)
            self.checkpoint(job_id)
            self.progress(job_id, 0.2, 'restore')
            t = time.monotonic()
            out, meta, applied = self.restore(job_id, restorer, img, o)
            self.release_job_tensors()  # before meta.memory is read: nothing of this job stays on the GPU
            timings['restoreMs'] = round((time.monotonic() - t) * 1000, 1)
            self.checkpoint(job_id)
            self.progress(job_id, 0.9, 'encode')
            t = time.monotonic()
            data = encode_image(out, o['format'], o['quality'], self.cv2)
            self.checkpoint(job_id)
            write_atomic(out_path, data)
            timings['encodeMs'] = round((time.monotonic() - t) * 1000, 1)
            timings['totalMs'] = round((time.monotonic() - t_start) * 1000, 1)
            meta.update({'modelLoaded': loaded, 'evicted': evicted, 'versionsLoaded': list(self.models),
                         'device': self.device_type, 'half': self.half, 'memory': self.memory()})
            self.proto.send({
                'type': 'done',
                'id': job_id,
                'output': {'width': int(out.shape[1]), 'height': int(out.shape[0]), 'format': o['format'],
                           'bytes': len(data)},
                'applied': applied,
                'timings': timings,
                'meta': meta,
            })
        except Canceled:
            log(f'job {job_id} canceled')
            self.send_canceled(job_id)
        except JobFailure as f:
            self.fail(job_id, f.code, str(f), f.retryable)
        except MemoryError as err:
            clear_traceback(err)
            self.release_job_tensors()
            self.free_memory()
            self.fail(job_id, 'ENGINE_MEMORY_LIMIT', f'out of host memory: {err}', True)
        except Exception as err:  # noqa: BLE001
            traceback.print_exc(file=sys.stderr)
            code, message, retryable = self.classify(err)
            clear_traceback(err)  # its frames hold the failed attempt's tensors
            self.release_job_tensors()
            self.free_memory()
            self.fail(job_id, code, message, retryable)
        finally:
            with self.lock:
                self.canceled.discard(job_id)
            # The upsampler's last input/output would otherwise stay on the GPU until the next job.
            self.release_job_tensors()

    def classify(self, err):
        """(code, message, retryable) for an exception a job raised."""
        text = f'{type(err).__name__}: {err}'
        if self.is_oom(err):
            return 'ENGINE_GPU_OOM', str(err), True
        if 'DefaultCPUAllocator' in str(err):
            return 'ENGINE_MEMORY_LIMIT', f'out of host memory: {err}', True
        if isinstance(err, NameError) and ('fused_act_ext' in str(err) or 'upfirdn2d_ext' in str(err)):
            return 'ENGINE_FAILED', f'{text}. {BASICSR_OPS_FIX.format(python=sys.executable)}', False
        if isinstance(err, PERMANENT_ERRORS):
            # the same input on the same installation fails the same way: retrying only delays the answer
            return 'ENGINE_FAILED', text, False
        return 'ENGINE_FAILED', text, True

    def fail(self, job_id, code, message, retryable):
        log(f'job {job_id} failed: {code}: {message}', 'error')
        msg = {'type': 'error', 'id': job_id, 'code': code, 'message': message}
        if retryable is not None:
            msg['retryable'] = bool(retryable)
        self.proto.send(msg)

    def set_scale(self, restorer, scale):
        """GFPGANer fixes `upscale` at construction, but uses it only through two attributes: its own `upscale`
        (the background upsampler's outscale) and FaceRestoreHelper's `upscale_factor` (paste-back geometry). Setting
        both per job lets one resident model serve every scale. Returns False if this GFPGAN lacks them."""
        helper = getattr(restorer, 'face_helper', None)
        if not hasattr(restorer, 'upscale') or helper is None or not hasattr(helper, 'upscale_factor'):
            return False
        restorer.upscale = scale
        if callable(getattr(helper, 'set_upscale_factor', None)):
            helper.set_upscale_factor(scale)
        else:
            helper.upscale_factor = scale
        return True

    def restore(self, job_id, restorer, img, o):
        cv2, np = self.cv2, self.np
        h, w = img.shape[:2]
        scale = o['scale']
        use_bg = o['bgUpsampler'] == 'realesrgan' and self.bg is not None and not o['aligned']
        tile = even_tile(o['bgTile'], MIN_USER_TILE) if o['bgTile'] > 0 else 0
        tiles_tried = []
        oom_retries = 0
        face_watch = self.face_watch.get(o['version'])
        native = self.set_scale(restorer, scale)
        if self.device_type == 'cuda':
            try:
                self.torch.cuda.reset_peak_memory_stats()
            except Exception:  # noqa: BLE001
                pass
        while True:
            restorer.bg_upsampler = self.bg if use_bg else None
            if use_bg:
                self.bg.tile_size = tile
                tiles_tried.append(tile)
            for watch in (face_watch, self.bg_watch):
                if watch is not None:
                    del watch.hits[:]
            oom_text = None
            try:
                cropped, restored, result = restorer.enhance(
                    img, has_aligned=o['aligned'], only_center_face=o['onlyCenterFace'], paste_back=True,
                    weight=o['weight'])
            except Exception as err:  # noqa: BLE001
                oom = self.first_hit(face_watch) or (err if self.is_oom(err) else None)
                if oom is None:
                    raise
                oom_text = str(oom)
                # Only the text is kept: the exceptions' tracebacks hold the frames of the layers that ran, and
                # with them their CUDA tensors.
                self.drop_exceptions(face_watch, oom, err)
                oom = None
            else:
                oom = self.first_hit(face_watch)
                if oom is not None:
                    oom_text = str(oom)
                    self.drop_exceptions(face_watch, oom)
                    oom = None
            if oom_text is None:
                break
            # CUDA ran out of memory (raised, or swallowed by GFPGAN / Real-ESRGAN): release what the failed attempt
            # still references, empty the cache and try once more with half the background tile (the whole image
            # counts as one tile when tiling is off), even and not below 64.
            result = cropped = restored = None
            self.release_job_tensors()
            self.free_memory()
            if oom_retries >= 1 or self.device_type != 'cuda':
                tried = f' (background tiles tried: {", ".join(map(str, tiles_tried))})' if tiles_tried else ''
                raise JobFailure('ENGINE_GPU_OOM', f'CUDA out of memory{tried}: {oom_text}', retryable=True)
            oom_retries += 1
            if use_bg:
                # a tile at least as large as the image is the whole image
                effective = min(tile, max(h, w)) if tile > 0 else max(h, w)
                tile = even_tile(effective // 2, MIN_RETRY_TILE)
            self.note(f'CUDA out of memory ({oom_text.splitlines()[0][:160]}); emptied the CUDA cache, retrying once'
                      + (f' with background tile {tile}' if use_bg else ''), job_id, 'warn')
            self.checkpoint(job_id)

        faces = len(restored or [])
        if o['aligned']:
            face = restored[0] if restored else (cropped[0] if cropped else None)
            if face is None:
                raise JobFailure('ENGINE_FAILED', 'GFPGAN returned no face for an aligned input', retryable=True)
            result = face
        if result is None:
            raise JobFailure('ENGINE_FAILED', 'GFPGAN returned no image', retryable=True)
        if result.dtype != np.uint8:
            result = np.clip(result, 0, 255).astype(np.uint8)
        th, tw = h * scale, w * scale
        resized = False
        if result.shape[0] != th or result.shape[1] != tw:
            interp = cv2.INTER_LANCZOS4 if tw >= result.shape[1] else cv2.INTER_AREA
            result = cv2.resize(result, (tw, th), interpolation=interp)
            resized = True
        meta = {'faces': faces, 'noFace': faces == 0, 'bgUpsampler': 'realesrgan' if use_bg else 'none',
                'bgTile': tile if use_bg else None, 'oomRetries': oom_retries,
                'scaleMethod': 'native' if (native and not resized) else 'resized'}
        if o['aligned']:
            meta['aligned'] = 'restored 512x512 face resized to input x scale'
        if faces == 0:
            meta['note'] = 'no face found: the result is the upsampled background only'
        if o['bgUpsampler'] == 'realesrgan' and not use_bg and not o['aligned']:
            meta['bgUpsamplerNote'] = self.bg_note
        if use_bg and self.half and float(result.mean()) < 2.0 and float(img.mean()) > 20.0:
            meta['warning'] = 'output is almost black: fp16 fails on some older GPUs; restart with --no-half'
            self.note(meta['warning'], job_id, 'warn')
        applied = {'scale': scale, 'version': o['version'], 'weight': o['weight'],
                   'onlyCenterFace': o['onlyCenterFace'], 'aligned': o['aligned'],
                   'bgUpsampler': 'realesrgan' if use_bg else 'none', 'format': o['format']}
        if use_bg:
            applied['bgTile'] = tile
        if o['format'] in ('jpeg', 'webp'):
            applied['quality'] = o['quality']
        return result, meta, applied

    def drop_exceptions(self, face_watch, *errors):
        """Forget recorded OOMs and clear the frames their tracebacks reference (the locals of finished frames, i.e.
        the network's intermediate tensors), so gc and empty_cache can give that GPU memory back."""
        for watch in (face_watch, self.bg_watch):
            if watch is not None:
                for hit in watch.hits:
                    clear_traceback(hit)
                del watch.hits[:]
        for err in errors:
            clear_traceback(err)

    def first_hit(self, face_watch):
        for watch in (face_watch, self.bg_watch):
            if watch is not None and watch.hits:
                return watch.hits[0]
        return None


# ------------------------------------------------------------------------------------------------------- doctor

def run_check(args, proto):
    """Doctor mode: report what this engine needs and what is missing, as one JSON object on stdout."""
    model_dir = os.path.abspath(args.model_dir)
    problems, warnings = [], []

    def problem(check, message, fix):
        problems.append({'check': check, 'message': message, 'fix': fix})

    def warning(check, message, fix=None):
        warnings.append({'check': check, 'message': message, **({'fix': fix} if fix else {})})

    report = {'engine': ENGINE_NAME, 'adapter': ADAPTER_VERSION, 'ok': False}
    py_ok = sys.version_info >= (3, 8)
    report['interpreter'] = {'path': sys.executable, 'version': sys.version.split()[0], 'ok': py_ok}
    if not py_ok:
        problem('interpreter', f'Python {sys.version.split()[0]} is too old', 'use Python 3.8 to 3.11 in the venv')

    try:
        shim = install_functional_tensor_shim()
    except Exception:  # noqa: BLE001
        shim = False
    imports = []
    for module, _pkg in IMPORTS:
        entry = {'module': module}
        try:
            importlib.import_module(module)
            entry['ok'] = True
            entry['version'] = package_version(module)
        except Exception as err:  # noqa: BLE001
            entry['ok'] = False
            entry['error'] = f'{type(err).__name__}: {err}'
            entry['fix'] = import_fix(module, str(err))
            problem(f'import {module}', f'cannot import {module}: {entry["error"]}', entry['fix'])
        imports.append(entry)
    report['imports'] = imports
    if shim:
        warning('torchvision', 'basicsr imports torchvision.transforms.functional_tensor, which this torchvision '
                'lacks; the adapter provides it at run time')

    cuda = {'available': False}
    torch = sys.modules.get('torch')
    if torch is not None:
        try:
            cuda['available'] = bool(torch.cuda.is_available())
            if cuda['available']:
                cuda['deviceCount'] = int(torch.cuda.device_count())
                cuda['deviceName'] = torch.cuda.get_device_name(0)
                free, total = torch.cuda.mem_get_info()
                cuda['freeBytes'], cuda['totalBytes'] = int(free), int(total)
        except Exception as err:  # noqa: BLE001
            cuda['error'] = f'{type(err).__name__}: {err}'
    report['cuda'] = cuda
    resolved = 'cuda' if (args.device == 'cuda' or (args.device == 'auto' and cuda['available'])) else 'cpu'
    report['device'] = {'requested': args.device, 'resolved': resolved}
    cuda_fix = ('install a CUDA build of torch (pip install torch torchvision --index-url '
                'https://download.pytorch.org/whl/cu121), check the driver with nvidia-smi and CUDA_VISIBLE_DEVICES')
    if args.device == 'cuda' and not cuda['available'] and torch is not None:
        problem('cuda', '--device cuda is configured but torch does not see a CUDA GPU', cuda_fix + '; or use --device cpu')
    elif args.device == 'auto' and not cuda['available'] and torch is not None:
        warning('cuda', 'no CUDA GPU visible: the engine will run on CPU (about 2 s per face, background upsampler '
                'off)', cuda_fix)

    models = {'dir': model_dir, 'exists': os.path.isdir(model_dir), 'files': []}
    if not models['exists']:
        problem('models', f'model directory {model_dir} does not exist',
                f'mkdir -p {model_dir} and download the weights into it (engines/gfpgan/README.md)')

    def check_file(kind, name, url, folder, required, label):
        path = os.path.join(folder, name)
        present = os.path.isfile(path)
        entry = {'kind': kind, 'file': name, 'path': path, 'present': present, 'required': required, 'url': url}
        if present:
            entry['bytes'] = os.path.getsize(path)
            if entry['bytes'] == 0:
                warning(f'model {name}', f'{path} is empty (a placeholder or a failed download)',
                        f'curl -L -o {path} {url}')
        else:
            entry['fix'] = f'mkdir -p {folder} && curl -L -o {path} {url}'
            (problem if required else warning)(f'model {name}', f'{label}: {path} is missing', entry['fix'])
        models['files'].append(entry)

    for version, spec in VERSIONS.items():
        default = version == args.default_version
        check_file('gfpgan', spec['file'], spec['url'], model_dir, default,
                   f'GFPGAN {version} weights' + (' (the default version)' if default
                                                   else f' (jobs asking for version {version} will fail)'))
    bg_wanted = args.bg_upsampler == 'realesrgan' or (args.bg_upsampler == 'auto' and resolved == 'cuda')
    check_file('realesrgan', BG_WEIGHTS['file'], BG_WEIGHTS['url'], model_dir, args.bg_upsampler == 'realesrgan',
               'RealESRGAN x2plus background upsampler weights'
               + ('' if bg_wanted else ' (not used on CPU unless --bg-upsampler realesrgan)'))
    for item in FACEXLIB_WEIGHTS:
        check_file('facexlib', item['file'], item['url'], os.path.join(model_dir, FACEXLIB_SUBDIR), True,
                   'facexlib face detection/parsing weights')
    report['models'] = models

    # Version 1 (the 'original' arch) needs basicsr's compiled CUDA ops, which `pip install basicsr` does not build.
    if sys.modules.get('basicsr') is not None:
        ops = basicsr_ops()
        report['basicsrOps'] = ops
        v1_default = args.default_version == '1'
        if resolved != 'cuda':
            (problem if v1_default else warning)(
                'version 1', "GFPGAN version 1 (the 'original' arch) runs only on CUDA (basicsr's fused_act has no CPU "
                'implementation)' + ('' if v1_default else '; jobs asking for version 1 will fail'),
                'use version 1.2, 1.3 or 1.4 on CPU')
        elif not (ops['fusedAct'] and ops['upfirdn2d']):
            (problem if v1_default else warning)(
                'version 1', "basicsr's compiled CUDA ops are missing"
                + ('' if v1_default else '; jobs asking for version 1 will fail'),
                BASICSR_OPS_FIX.format(python=sys.executable))
    report['problems'] = problems
    report['warnings'] = warnings
    report['ok'] = not problems
    proto.send(report)
    return 0 if report['ok'] else 1


# --------------------------------------------------------------------------------------------------------- main

def parse_args(argv):
    p = argparse.ArgumentParser(description='Resident GFPGAN engine for PhotoEnhance Gateway (engine protocol v1).')
    p.add_argument('--model-dir', required=True, help='folder with the .pth weights (see engines/gfpgan/README.md)')
    p.add_argument('--device', choices=['auto', 'cuda', 'cpu'], default='auto')
    p.add_argument('--max-models', type=int, default=1, help='GFPGAN versions kept resident at once (default 1)')
    p.add_argument('--default-version', choices=list(VERSIONS), default='1.4',
                   help='loaded at start-up and used by jobs that name no version (default 1.4)')
    half = p.add_mutually_exclusive_group()
    half.add_argument('--half', dest='half', action='store_true', default=None,
                      help='fp16 background upsampler (the default on CUDA)')
    half.add_argument('--no-half', dest='half', action='store_false',
                      help='fp32 background upsampler (for GPUs where fp16 gives black output)')
    p.add_argument('--bg-upsampler', choices=['auto', 'realesrgan', 'none'], default='auto',
                   help='auto: RealESRGAN x2plus on CUDA, none on CPU (as GFPGAN does)')
    p.add_argument('--check', action='store_true', help='doctor mode: print one JSON report and exit (0 = usable)')
    args = p.parse_args(argv)
    if args.max_models < 1:
        p.error('--max-models must be at least 1')
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    proto = Protocol()
    if args.check:
        return run_check(args, proto)
    engine = Engine(args, proto)
    # Until ready there is nothing to finish: a signal ends start-up at once.
    signal.signal(signal.SIGTERM, lambda s, f: os._exit(128 + s))
    signal.signal(signal.SIGINT, lambda s, f: os._exit(128 + s))
    try:
        engine.start()
    except StartFailure as err:
        log(str(err), 'error')
        proto.send({'type': 'error', 'code': 'ENGINE_START_FAILED', 'message': str(err), 'retryable': False})
        return 1
    except JobFailure as err:  # loading the default version failed; the message says why and what to do
        log(str(err), 'error')
        proto.send({'type': 'error', 'code': 'ENGINE_START_FAILED', 'message': f'start-up failed: {err}',
                    'retryable': err.code == 'ENGINE_GPU_OOM'})
        return 1
    except Exception as err:  # noqa: BLE001
        traceback.print_exc(file=sys.stderr)
        proto.send({'type': 'error', 'code': 'ENGINE_START_FAILED',
                    'message': f'start-up failed: {type(err).__name__}: {err}', 'retryable': False})
        return 1
    engine.loop()
    log('exiting')
    return 0


if __name__ == '__main__':
    code = main()
    sys.stderr.flush()
    # Exit without interpreter teardown: CUDA and threads blocked on stdin can make a normal exit slow or hang.
    os._exit(code)
