//! Background work runs at a lower scheduling priority than the core: `lower_thread_priority`
//! changes the calling thread only, and the threads it starts afterwards inherit it.

use clearline_journal::{lower_thread_priority, BACKGROUND_NICE};

/// The nice value of the calling thread, from `/proc/thread-self/stat` (field 19).
fn nice_of_this_thread() -> i32 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("read the thread's stat");
    // The name (field 2) is in parentheses and may hold spaces; fields after it are plain.
    let after_name = &stat[stat.rfind(')').expect("name field") + 2..];
    after_name
        .split(' ')
        .nth(16)
        .expect("nice field")
        .parse()
        .expect("nice is a number")
}

#[test]
fn lowering_the_priority_changes_the_calling_thread_and_its_later_threads_only() {
    let before = nice_of_this_thread();
    assert!(
        before < BACKGROUND_NICE,
        "the test runs at nice {before} already"
    );
    let (own, inherited) = std::thread::spawn(|| {
        lower_thread_priority(BACKGROUND_NICE);
        let own = nice_of_this_thread();
        let inherited = std::thread::spawn(nice_of_this_thread)
            .join()
            .expect("inner thread");
        (own, inherited)
    })
    .join()
    .expect("background thread");
    assert_eq!(own, BACKGROUND_NICE);
    assert_eq!(inherited, BACKGROUND_NICE);
    assert_eq!(
        nice_of_this_thread(),
        before,
        "the caller's sibling is unchanged"
    );
}
