DROP TABLE vendor_exceptions;
DROP TABLE vendor_cursors;
