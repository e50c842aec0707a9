"""The one error type the exporter raises for bad input or a failed check."""


class ExportError(Exception):
    """A problem the user can fix; the message is one line meant to be shown as is.

    Whenever this is raised the model repository has not been changed.
    """
