//! The child-process harness the other tests stand on: a child is run by
//! its function, and a run that executed no test fails instead of passing.

mod support;

#[test]
fn a_misspelled_child_fails_instead_of_passing_with_no_test() {
    // What a misspelled name does: libtest runs nothing and says "0 passed"
    // with exit code 0. The harness must refuse that.
    let err = support::try_run_child("child_that_is_not_there", &[])
        .expect_err("a child that matches no test was taken for a pass");
    assert!(err.contains("ran 0 tests"), "{err}");
}

#[test]
fn a_child_named_by_its_function_runs_exactly_once() {
    let child = support::run_child!(child_reports_a_value, &[("HARNESS_VALUE", "42")]);
    child.assert_success();
    assert_eq!(child.value("VALUE"), "42");
}

#[test]
fn a_failing_child_is_reported_as_failed_not_as_missing() {
    let child = support::run_child!(child_fails_on_purpose);
    assert!(!child.status.success(), "{child}");
    assert!(child.stderr.contains("deliberate failure"), "{child}");
}

#[test]
#[ignore = "run as a child process by a_child_named_by_its_function_runs_exactly_once"]
fn child_reports_a_value() {
    if !support::is_child() {
        return;
    }
    let value = std::env::var("HARNESS_VALUE").expect("the parent's environment reached the child");
    println!("VALUE={value}");
}

#[test]
#[ignore = "run as a child process by a_failing_child_is_reported_as_failed_not_as_missing"]
fn child_fails_on_purpose() {
    if !support::is_child() {
        return;
    }
    panic!("deliberate failure");
}
