//! Compile-fail tests of the plaintext boundary: server-side code cannot build an
//! `EncryptedMatrix` from plaintext, read plaintext out of one, pass plaintext where ciphertexts
//! are expected, or reach the authority (and its master secret keys) through a key service.

#[test]
fn plaintext_boundary() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
