//! Progress lines on stderr and the JSON report.
