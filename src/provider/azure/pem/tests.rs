use super::*;

/// An RSA-2048 public key: its JWK fields and the PEM openssl writes for it.
const RSA_N: &str = "x-aZvXI7aetnCo27jERrazIZCd1RPBAVnAMWp8jcNSBNL9un9RkzrG8WuHPWQsjA06EtH8SR5kS6T_hd00SQMZ80LNSqbI0O0Lqc30sKR8SCDupKyvJdoMKIYMXt3RY9Gf0jmnpsJ8OVl1ofTc92wTH5v2Ob5B6Z0WwwnLZSbFAgHMnLrmtKpe5MrtFSmge_R_Byeslpe43Qnnzgw8QOsSvL6xCSmWUoVADK_S1DE476ADC6khFN1ydu3n5ArtDTb4sAcPwSypwXgM3v9XzgQJJDFOBI9xRMoT3acQitgG6DfbmH39d7UO73J7uAPYJTDmidhk-FE8oen6VPoXG_5w";
/// The key of the CSI driver's azure.bats (`KEY_VALUE_CONTAINS`, base64 of the PEM).
const RSA_PEM_B64: &str = "LS0tLS1CRUdJTiBQVUJMSUMgS0VZLS0tLS0KTUlJQklqQU5CZ2txaGtpRzl3MEJBUUVGQUFPQ0FROEFNSUlCQ2dLQ0FRRUF4K2FadlhJN2FldG5DbzI3akVScgpheklaQ2QxUlBCQVZuQU1XcDhqY05TQk5MOXVuOVJrenJHOFd1SFBXUXNqQTA2RXRIOFNSNWtTNlQvaGQwMFNRCk1aODBMTlNxYkkwTzBMcWMzMHNLUjhTQ0R1cEt5dkpkb01LSVlNWHQzUlk5R2Ywam1ucHNKOE9WbDFvZlRjOTIKd1RINXYyT2I1QjZaMFd3d25MWlNiRkFnSE1uTHJtdEtwZTVNcnRGU21nZS9SL0J5ZXNscGU0M1FubnpndzhRTwpzU3ZMNnhDU21XVW9WQURLL1MxREU0NzZBREM2a2hGTjF5ZHUzbjVBcnREVGI0c0FjUHdTeXB3WGdNM3Y5WHpnClFKSkRGT0JJOXhSTW9UM2FjUWl0Z0c2RGZibUgzOWQ3VU83M0o3dUFQWUpURG1pZGhrK0ZFOG9lbjZWUG9YRy8KNXdJREFRQUIKLS0tLS1FTkQgUFVCTElDIEtFWS0tLS0t";

#[test]
fn an_rsa_jwk_becomes_the_pem_the_drivers_e2e_test_expects() {
    let jwk = Jwk {
        kty: "RSA-HSM".into(),
        n: Some(RSA_N.into()),
        e: Some("AQAB".into()),
        ..Default::default()
    };
    let pem = public_key_pem(&jwk).unwrap();
    let expected = base64::engine::general_purpose::STANDARD
        .decode(RSA_PEM_B64)
        .unwrap();
    // azure.bats compares `echo "$(cat file)" | base64`: the PEM without its final newline.
    assert_eq!(&pem[..pem.len() - 1], &expected[..]);
    assert!(pem.ends_with(b"-----END PUBLIC KEY-----\n"));
}

#[test]
fn ec_jwks_pad_their_coordinates_and_unknown_curves_and_types_are_refused() {
    // x with its leading zero byte dropped: padded back to the curve size.
    let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([7u8; 31]);
    let y = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([9u8; 32]);
    let jwk = Jwk {
        kty: "EC".into(),
        crv: Some("P-256".into()),
        x: Some(x),
        y: Some(y.clone()),
        ..Default::default()
    };
    let pem = String::from_utf8(public_key_pem(&jwk).unwrap()).unwrap();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap();
    // SPKI of P-256: 26 bytes of header, then 04 || X(32) || Y(32).
    assert_eq!(der.len(), 91);
    assert_eq!(&der[26..28], &[4, 0]);
    assert_eq!(&der[28..59], &[7u8; 31][..]);
    for (kty, crv) in [("EC", "P-256K"), ("oct", "")] {
        let jwk = Jwk {
            kty: kty.into(),
            crv: Some(crv.into()),
            x: Some(y.clone()),
            y: Some(y.clone()),
            ..Default::default()
        };
        assert!(public_key_pem(&jwk).is_err(), "{kty} {crv}");
    }
    let jwk = Jwk {
        kty: "RSA".into(),
        n: Some("not base64!".into()),
        e: Some("AQAB".into()),
        ..Default::default()
    };
    assert!(public_key_pem(&jwk).unwrap_err().contains("\"n\""));
}

#[test]
fn pem_lines_are_64_characters_with_a_final_newline() {
    let pem = String::from_utf8(encode("CERTIFICATE", &[0xab; 100])).unwrap();
    let lines: Vec<&str> = pem.lines().collect();
    assert_eq!(lines[0], "-----BEGIN CERTIFICATE-----");
    assert_eq!(lines[1].len(), 64);
    assert_eq!(lines[2].len(), 64);
    assert_eq!(lines[3].len(), 136 - 128);
    assert_eq!(lines[4], "-----END CERTIFICATE-----");
    assert!(pem.ends_with("-----\n"));
}

#[test]
fn chains_without_links_keep_their_order_and_garbage_is_refused() {
    assert!(chain_order(vec![vec![0x30, 0x00]]).is_err());
    assert_eq!(chain_order(Vec::new()).unwrap(), Vec::<Vec<u8>>::new());
}

#[test]
fn pkcs8_keys_are_normalized_as_go_writes_them() {
    use crate::provider::azure::der::{bit_string, sequence, tlv, uint, OCTET_STRING, OID};
    // An EC key as some writers have it: attributes-free PKCS#8 version 0, the curve in the
    // algorithm and again inside, a 31-byte scalar (its leading zero dropped).
    let point = [&[4u8][..], &[1u8; 32], &[2u8; 32]].concat();
    let inner = sequence(&[
        &[0x02, 0x01, 0x01],
        &tlv(OCTET_STRING, &[9u8; 31]),
        &tlv(0xa0, &tlv(OID, oids::P256)),
        &tlv(0xa1, &bit_string(&point)),
    ]);
    let alg = sequence(&[&tlv(OID, oids::EC), &tlv(OID, oids::P256)]);
    let given = sequence(&[&[0x02, 0x01, 0x00], &alg, &tlv(OCTET_STRING, &inner)]);
    let want_inner = sequence(&[
        &[0x02, 0x01, 0x01],
        &tlv(OCTET_STRING, &[&[0u8][..], &[9u8; 31]].concat()),
        &tlv(0xa1, &bit_string(&point)),
    ]);
    let want = sequence(&[&[0x02, 0x01, 0x00], &alg, &tlv(OCTET_STRING, &want_inner)]);
    assert_eq!(normalize_pkcs8(&given).unwrap(), want);
    // Without its public key it is refused (computing it would need the curve's arithmetic).
    let bare = sequence(&[&[0x02, 0x01, 0x01], &tlv(OCTET_STRING, &[9u8; 32])]);
    let e = normalize_pkcs8(&sequence(&[
        &[0x02, 0x01, 0x00],
        &alg,
        &tlv(OCTET_STRING, &bare),
    ]));
    assert!(e.unwrap_err().contains("no public key"));
    // RSA: integers re-encoded minimally, the algorithm's NULL parameters added.
    let ints: Vec<Vec<u8>> = (1u8..=8).map(|i| tlv(0x02, &[0, 0, i])).collect();
    let mut parts: Vec<&[u8]> = vec![&[0x02, 0x01, 0x00]];
    parts.extend(ints.iter().map(Vec::as_slice));
    let pkcs1 = sequence(&parts);
    let bare_alg = sequence(&[&tlv(OID, oids::RSA)]);
    let given = sequence(&[&[0x02, 0x01, 0x00], &bare_alg, &tlv(OCTET_STRING, &pkcs1)]);
    let out = normalize_pkcs8(&given).unwrap();
    let min: Vec<Vec<u8>> = (1u8..=8).map(|i| uint(&[i])).collect();
    let mut parts: Vec<&[u8]> = vec![&[0x02, 0x01, 0x00]];
    parts.extend(min.iter().map(Vec::as_slice));
    let with_null = sequence(&[&tlv(OID, oids::RSA), &tlv(0x05, &[])]);
    assert_eq!(
        out,
        sequence(&[
            &[0x02, 0x01, 0x00],
            &with_null,
            &tlv(OCTET_STRING, &sequence(&parts))
        ])
    );
    assert!(normalize_pkcs8(&[0x30, 0x00]).is_err());
}
