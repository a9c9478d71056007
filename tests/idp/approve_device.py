"""Plays the person at the browser in an OIDC device authorization flow.

    python3 tests/idp/approve_device.py VERIFICATION_URI_COMPLETE USERNAME

Opens the verification page, then submits each form the IdP shows (confirm the user code,
sign in on the development login form, grant consent), following redirects and keeping
cookies, until a page without a form is reached. Standard library only. Prints the final
page's text; exits non-zero if the IdP never shows its success page.
"""

import html.parser
import http.cookiejar
import sys
import urllib.parse
import urllib.request


class Forms(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.forms = []
        self.text = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.forms.append({"action": a.get("action", ""), "fields": {}, "button": False})
        elif tag == "input" and self.forms and a.get("name"):
            if a.get("type") == "checkbox" and "checked" not in a:
                return
            self.forms[-1]["fields"].setdefault(a["name"], a.get("value", ""))
        elif tag == "button" and self.forms and not self.forms[-1]["button"]:
            # A form is submitted with its first button only (the others abort or go back).
            self.forms[-1]["button"] = True
            if a.get("name"):
                self.forms[-1]["fields"][a["name"]] = a.get("value", "")

    def handle_data(self, data):
        self.text.append(data.strip())


def main(url, user):
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    )
    response = opener.open(url, timeout=10)
    for _ in range(10):
        page = response.read().decode("utf-8", "replace")
        parser = Forms()
        parser.feed(page)
        if not parser.forms:
            text = " ".join(t for t in parser.text if t)
            print(text)
            return 0 if "success" in text.lower() or "sign-in" in text.lower() else 1
        form = parser.forms[0]
        fields = form["fields"]
        if "login" in fields:
            fields["login"] = user
        if "password" in fields:
            fields["password"] = "any"
        action = urllib.parse.urljoin(response.geturl(), form["action"])
        data = urllib.parse.urlencode(fields).encode()
        response = opener.open(action, data=data, timeout=10)
    print("too many forms", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
