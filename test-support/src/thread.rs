//! What the operating system says about the calling thread, for tests of thread priorities.

/// The calling thread's nice value, from `/proc/thread-self/stat` (its 19th field).
///
/// # Panics
///
/// If the file cannot be read or parsed (not Linux, or no procfs).
pub fn nice_of_this_thread() -> i32 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("read the thread's stat");
    // The name (field 2) is in parentheses and may hold spaces; the fields after it are plain.
    let after_name = &stat[stat.rfind(')').expect("name field") + 2..];
    after_name
        .split(' ')
        .nth(16)
        .expect("nice field")
        .parse()
        .expect("nice is a number")
}
