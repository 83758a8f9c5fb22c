/* openmpos simulator: fixed RSA test keys of the virtual card (cardsim only, never real).
 * Generated once with OpenSSL 3 (openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:N
 * -pkeyopt rsa_keygen_pubexp:E): certification authority 1408 bits e=3, issuer 1152 bits e=3,
 * ICC PIN encipherment 1024 bits e=65537. Sizes chosen so that both certificates need a
 * public key remainder (Book 2 5.3 / 6.4). */
#include "testkeys.h"

const char mpos_cardsim_ca_key_pem[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIIDTgIBADANBgkqhkiG9w0BAQEFAASCAzgwggM0AgEAAoGxANq1KYmRBo1FKLgs\n"
    "ojn97crqYKT1mfqySbdmV7uDLBkHFiLQ+qyoLQ9JxpzlgkvcTZDQ8mfBb+xOCufo\n"
    "k9hjJvZtOfMhA7oYsUSWcNHhmxa6JrN6TCwDOlVFOkaXpyVVd6pHWfuKHgwMVRGW\n"
    "oPqyZ4jHWsfrKIaD9YCv6RE/tmjW18uQEKKY2/PruEVtqHBTBzY9KViI2XiGTjX+\n"
    "5RUUHDIKAjEpe8uGmjrUQSrzYZ5DAgEDAoGxAJHOG7ELWbODcHrIbCapSTHxlcNO\n"
    "ZqchhnpEOn0CHWYEuWyLUchwHgoxLxNDrDKS3mCLTEUrn/Lese/wYpBCGfmeJqIW\n"
    "AnwQdi25oIvrvLnRbyJRiB1XfDecmVNfd2Q5etR1BE5z9sSFHlPT+SlM7qmTO1j+\n"
    "Vslk1gxGxIfMsU2DollhoPaOnkxNjoXOA/UyYctaW3DSKKqxFhIbEq/V+8hSOrAA\n"
    "sxWVb5PD++596+HLAlkA/TlJaHbK5pPZmox0rpVSWg/06fVz5wK7acSJXhBL7049\n"
    "k+niu1SHD7cPhm3qBYznNbOffUK60gbL7AN9VzR2lwJ7gG8NGVntU+ODyGfEW1vT\n"
    "IDiTtwt32wJZAN0bAB/9RBirkf1HES2WkuqXnu61yNf+zwC9OQ+WDH1mMLHYYtFX\n"
    "7YGtNfcxRr1hmkGu3TtfxbVtuUmcsfZoAeWqn1XaADnImDrGpWAHZssXCg4OsX90\n"
    "U7kCWQCo0Nua+dyZt+ZnCE3JuOGRX/ib+PfvVyeb2FuUCt1KNCkNRpcnja9fz1+u\n"
    "8/FZCJojzRT+LHyMBIfyrP46Ivm6Aaeq9LNmO/ONQlfa79g85+IVew0ksk/nAlkA\n"
    "k2dVaqjYEHJhU4S2HmRh8bpp9Hkwj/80qyjQtQ6y/kQgdpBB4OVJAR4j+iDZ05Zm\n"
    "1nSTfOqDzkkmMRMhTvABQ8cU4+aq0TBlfIRuQATvMg9cCV8g/6LiewJYfOrUGzs2\n"
    "r7CTl2pBbOLeKMhLZmlRkysXJZQXM297hWpfhJsI84mmRnYynW0b6m9jZ3Xfj14c\n"
    "4bOC3EOrogzAaeIpMPBqsTxXsto9xiiJmnZwG+WxtULDRQ==\n"
    "-----END PRIVATE KEY-----\n";

const char mpos_cardsim_iss_key_pem[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIICvgIBADANBgkqhkiG9w0BAQEFAASCAqgwggKkAgEAAoGRANnan1h8k9wTbIY8\n"
    "uqssUH/LQHRIcVfv8gAENO22BN3dOti4aUIxHy7IQiIjheIg6eb/BL75Go+0Ow1p\n"
    "7XPOWxZO3En62QzmSi6ZquBh5A94FuqP/mpQkKFpkWHrbe6vmrplxi+GpCFoxvDm\n"
    "6KcVsvrAX7ANxCMkVUXpiXczjzSL2Zmhq7zDFhCKGp4kkoqL0wIBAwKBkQCRPGo6\n"
    "/bfoDPMEKHxyHYr/3NWi2vY6n/aqrXieeViT6NHl0EYsIL90hYFsF66WwJvvVK3U\n"
    "phG1ItII8Uj33udkNJLb/JCzRDA4utQcbfJcKD2S9vnhGI8JblGu8SwcHjp/O7w1\n"
    "D3qCuRdei+1LbwCzFCiP53AIAfsU2DjbQAMyrexzgWLh3jhz9z3LFmwvzAsCSQD9\n"
    "hgVOv49KVRVNMDHFG1r/g02omu2QzGiYeb3b1v45H8bBfFw5L+Do9ZWGN8fLHcOP\n"
    "Xy+T37pZwTDoisEVpHu4vFXzdeo/OJsCSQDb+2dm/Wk65qVA7VXTkF8TwMky5r4z\n"
    "tdpjEm4EGG4kM10hmKh8v1EFLI1R+tRMA5kXRgSac9AOxcYD1NZUUUWp2uf6DQYD\n"
    "oSkCSQCpBAOJ1Qoxjg4zdXaDZ5H/rN5wZ0kLMvBlpn6Sj1QmFS8rqD17dUCbTmOu\n"
    "z9qHaS0KP3UNP9GRK3XwXIC5GFJ7KDlM+UbU0GcCSQCSp5pEqPDR7xjV846NCuoN\n"
    "KzDMmdQieTxCDElYEEltd5Nruxr91OCuHbOL/I2IAmYPhAMRooq0g9lX4zmNi4PG\n"
    "ke/8CK6tFhsCSHrLVbjUxRe2TFOvL+E2l3iWi0STRFqejtPKKYOb0/8f8+NR28RF\n"
    "0Bqc3lbPiEWaTqxBBlDOUC++r0bGaWpFlhIIbGQ5ajd0Jg==\n"
    "-----END PRIVATE KEY-----\n";

const char mpos_cardsim_icc_key_pem[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIICdgIBADANBgkqhkiG9w0BAQEFAASCAmAwggJcAgEAAoGBAPTIMr/RpaYrTTLZ\n"
    "U1JQHE1JgSQLPRvrEKHd9C8cu6rt1vuUz1qE1jLGo0K34iszhcvpB7HiTlDX0k8H\n"
    "7oaeJCWLUwzPrlfGrRvbi/YsVudv2DRJ7V7RMlN5NUeqz+EXzX4/3V4RsVSMAjHy\n"
    "2E1RYyyljc6QHB3XKg12ukdVqh17AgMBAAECgYEAwqtUcOix7G0TgBUGBrhfSbfj\n"
    "VF77wnA3UgPKZo1bUpzEFGBMZ5itIMSIok7LN8BJ79jrnbR0xCZfwypzr+ukogjy\n"
    "EALdn/DYtnjQQ0vEj8Odzi/lluXOALNxyfuRF2VqEbPuR36HcDG+E07UJxq8uqZP\n"
    "QhrdSnxzqUysJgea2gECQQD9RizUx7jGyJ/g0M5KnpkSyNMqbQL73Hbo7yrI/dsc\n"
    "EeHWJ8XKH3My67WBZJuMAguLO9Kx0KGj/zhjEaMIKt9hAkEA92qgJHxHJVYgLmio\n"
    "WmRvfMg/ndomuwYQHC/2s45sWfPYToSeJmk3obYm4E2Cx+oo/Gh/S89eXgG97leQ\n"
    "rTZ2WwJAOqcqsKgD4X0KkVypuVwbJN9/D38pRrxaiT0B0oP/XvPBMgAJ7PH1kqBF\n"
    "a06qOvUqSTc0Ztti44CyRTcLY1PSYQJAbwlnPXiY5WS1pJ5Lj+WrMzEbe9g/sYeT\n"
    "C1NrQEIW1nfdB7/0ygBGe0ioQdoHa3jnVAABwSAblczqVGDwCQx8KQJAYYYEDM1c\n"
    "hQKi+UH5hIWR52swxfOWP6s1rXYc0PAPmwB6OlLDY/3F02rn7no1CRWpjKu9DOMk\n"
    "NsnbEQ5SlQMzRw==\n"
    "-----END PRIVATE KEY-----\n";
