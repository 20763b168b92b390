// the inbox
