//! The KEK really is non-extractable: its value cannot be read from the token, and the token
//! refuses to wrap it out under another key. One test per binary: it sets SOFTHSM2_CONF for
//! this process.

mod common;

use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass};
use offbox::config::Config;
use offbox::keys::pkcs11::Pkcs11Custodian;

#[test]
fn kek_value_cannot_leave_the_token() {
    let sim = common::Sim::new();
    // Safe here: this test binary has this one test, so no other thread reads the environment.
    std::env::set_var("SOFTHSM2_CONF", &sim.softhsm_conf);
    let cfg = Config::load(&sim.config()).unwrap();
    let c = Pkcs11Custodian::open(cfg.keys.pkcs11.as_ref().unwrap()).unwrap();
    let s = c.session();
    let keks = s
        .find_objects(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Label(b"offbox-kek".to_vec()),
        ])
        .unwrap();
    assert_eq!(keks.len(), 1);
    let kek = keks[0];

    // CKA_VALUE is not returned (SoftHSM omits sensitive attributes; others fail).
    let value = s.get_attributes(kek, &[AttributeType::Value]);
    if let Ok(attrs) = value {
        assert!(
            !attrs.iter().any(|a| matches!(a, Attribute::Value(_))),
            "KEK value was readable"
        );
    }
    let attrs = s
        .get_attributes(
            kek,
            &[
                AttributeType::Extractable,
                AttributeType::Sensitive,
                AttributeType::NeverExtractable,
                AttributeType::Token,
            ],
        )
        .unwrap();
    for a in attrs {
        match a {
            Attribute::Extractable(v) => assert!(!v, "CKA_EXTRACTABLE is true"),
            Attribute::Sensitive(v) => assert!(v, "CKA_SENSITIVE is false"),
            Attribute::NeverExtractable(v) => assert!(v, "CKA_NEVER_EXTRACTABLE is false"),
            Attribute::Token(v) => assert!(v, "KEK is not a token object"),
            _ => {}
        }
    }

    // Wrapping the KEK out under another key is refused.
    let wrapper = s
        .generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::ValueLen(32.into()),
                Attribute::Token(false),
                Attribute::Wrap(true),
            ],
        )
        .unwrap();
    match s.wrap_key(&Mechanism::AesKeyWrap, wrapper, kek) {
        Err(cryptoki::error::Error::Pkcs11(rv, _)) => {
            assert_eq!(offbox::keys::pkcs11::rv_name(&rv), "CKR_KEY_UNEXTRACTABLE")
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("the token wrapped the KEK out"),
    }
}
