//! Background work runs at a lower scheduling and I/O priority than the core:
//! `lower_thread_priority` changes the calling thread only, and the threads it starts afterwards
//! inherit it.

use clearline_journal::{lower_thread_priority, BACKGROUND_NICE};
use clearline_test_support::thread::nice_of_this_thread;

/// The calling thread's id, from the `/proc/thread-self` link (`PID/task/TID`).
fn this_thread_id() -> String {
    let link = std::fs::read_link("/proc/thread-self").expect("read /proc/thread-self");
    let link = link.to_string_lossy();
    link.rsplit('/').next().expect("thread id").to_owned()
}

/// The I/O scheduling class of thread `id`, as `ionice` (util-linux) names it.
fn io_class_of(id: &str) -> String {
    let output = std::process::Command::new("ionice")
        .args(["-p", id])
        .output()
        .expect("run ionice");
    assert!(output.status.success(), "ionice -p {id} failed");
    let text = String::from_utf8_lossy(&output.stdout);
    text.split(':').next().unwrap_or("").trim().to_owned()
}

/// This thread's nice value and I/O class.
fn priorities() -> (i32, String) {
    (nice_of_this_thread(), io_class_of(&this_thread_id()))
}

#[test]
fn lowering_the_priority_changes_the_calling_thread_and_its_later_threads_only() {
    let before = priorities();
    assert!(
        before.0 < BACKGROUND_NICE,
        "the test runs at nice {before:?}"
    );
    assert_ne!(before.1, "idle", "the test runs in the idle I/O class");
    let (own, inherited) = std::thread::spawn(|| {
        lower_thread_priority(BACKGROUND_NICE);
        let own = priorities();
        let inherited = std::thread::spawn(priorities).join().expect("inner thread");
        (own, inherited)
    })
    .join()
    .expect("background thread");
    let background = (BACKGROUND_NICE, "idle".to_owned());
    assert_eq!(own, background);
    assert_eq!(inherited, background);
    assert_eq!(priorities(), before, "the caller's sibling is unchanged");
}
