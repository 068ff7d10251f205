"""What a scan says, pure array code: peak metrics, preprocessing, defects, displacement and strain, mechanics, flags, one scan, a series, views, the event record."""
