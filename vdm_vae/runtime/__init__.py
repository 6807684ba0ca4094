"""What every command shares: flags and one-line errors, console lines, progress, files
written whole, locks and image files."""
