"""Localised texts of the simulated servers (en, de, cs).

Windows renders event descriptions and level names in the server's display language, so the
collection must detect Event 2004 by Id, provider and the SMTP response inside the text (which comes
from Exchange Online and is never translated), not by English prose. The German and Czech wording
follows the localised versions of KB 2888788 (exchange-facts.md).
"""

from __future__ import annotations

LOCALES = ("en", "de", "cs")
CULTURES = {"en": "en-US", "de": "de-DE", "cs": "cs-CZ"}

LEVEL_NAMES = {
    "en": {"Information": "Information", "Warning": "Warning", "Error": "Error"},
    "de": {"Information": "Informationen", "Warning": "Warnung", "Error": "Fehler"},
    "cs": {"Information": "Informace", "Warning": "Upozornění", "Error": "Chyba"},
}

# Event 2004, MSExchangeTransport, category SmtpSend.
_EVENT_2004 = {
    "en": (
        "Send connector {connector}: The message delivery was not successful. The message with message ID "
        "{message_id} was acknowledged with SMTP response {response}"
    ),
    "de": (
        "Sendeconnector {connector}: Die Nachrichtenübermittlung war nicht erfolgreich. Die Nachricht mit "
        "der Nachrichten-ID {message_id} wurde mit der SMTP-Antwort {response} bestätigt."
    ),
    "cs": (
        "Konektor pro odesílání {connector}: doručení zprávy nebylo úspěšné. Zpráva s ID zprávy "
        "{message_id} byla potvrzena odpovědí protokolu SMTP {response}."
    ),
}

# Event 12014, MSExchangeTransport, category TransportService: no certificate for a name. Its real
# localised wording is not in the sources the lab follows, so every locale gets the English text.
_EVENT_12014 = (
    "Microsoft Exchange could not find a certificate that contains the domain name {name} in the "
    "personal store on the local computer. Therefore, it is unable to support the STARTTLS SMTP verb "
    "for the connector {connector} with a FQDN parameter of {name}. If the connector's FQDN is not "
    "specified, the computer's FQDN is used. Verify the connector configuration and the installed "
    "certificates to make sure that there is a certificate with a domain name for that FQDN. If this "
    "certificate was renewed recently, use the Enable-ExchangeCertificate cmdlet to enable the new "
    "certificate."
)


def event_2004(locale: str, connector: str, message_id: str, response: str) -> str:
    return _EVENT_2004[locale].format(connector=connector, message_id=message_id, response=response)


def event_12014(locale: str, connector: str, name: str) -> str:
    return _EVENT_12014.format(connector=connector, name=name)


def level_name(locale: str, level: str) -> str:
    return LEVEL_NAMES[locale].get(level, level)
