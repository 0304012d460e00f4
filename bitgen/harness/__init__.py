"""The MCU harness: boards, firmware builds, flashing, the wire protocol and board sessions."""
