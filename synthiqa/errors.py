"""The exception every user mistake raises; the CLI prints it as one line, without a traceback."""


class SynthiqaError(Exception):
    """A problem with the user's input (file, option, data), stated in one line."""


class DistortionInputError(SynthiqaError, ValueError):
    """Images or distortion parameters that the engine cannot use."""


class DatasetError(SynthiqaError):
    """A dataset folder, label file or image that cannot be read as asked."""


class ConfigError(SynthiqaError, ValueError):
    """A configuration value or command-line option that is out of range or unknown."""
