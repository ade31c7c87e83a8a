//! Loop-mounted scratch filesystems that a test creates, freezes and always
//! thaws and removes, also when the test fails.
