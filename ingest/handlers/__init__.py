"""The dispatch table: every message type we map, and the module that maps it.

A type missing here is still recorded in ``call_events`` (state ``ignored``) and changes
nothing else.
"""

from __future__ import annotations

from ingest.handlers import (
    api_call,
    assistant_request,
    call_artifact_upload,
    call_delete_failed,
    call_deleted,
    chat_created,
    chat_deleted,
    conversation_update,
    end_of_call_report,
    function_call,
    handoff_destination_request,
    hang,
    knowledge_base_request,
    language_change_detected,
    model_output,
    phone_call_control,
    session_created,
    session_deleted,
    session_updated,
    speech_update,
    status_update,
    tool_calls,
    transcript,
    transfer_destination_request,
    transfer_update,
    user_interrupted,
    voice_input,
)
from ingest.handlers.common import Context, Handler
from ingest.vocabulary import TRANSCRIPT_TYPES, MessageType

HANDLERS: dict[str, Handler] = {
    MessageType.STATUS_UPDATE: status_update.handle,
    MessageType.END_OF_CALL_REPORT: end_of_call_report.handle,
    **dict.fromkeys(TRANSCRIPT_TYPES, transcript.handle),
    MessageType.CONVERSATION_UPDATE: conversation_update.handle,
    MessageType.SPEECH_UPDATE: speech_update.handle,
    MessageType.HANG: hang.handle,
    MessageType.USER_INTERRUPTED: user_interrupted.handle,
    MessageType.MODEL_OUTPUT: model_output.handle,
    MessageType.TOOL_CALLS: tool_calls.handle,
    MessageType.FUNCTION_CALL: function_call.handle,
    MessageType.ASSISTANT_REQUEST: assistant_request.handle,
    MessageType.TRANSFER_DESTINATION_REQUEST: transfer_destination_request.handle,
    MessageType.HANDOFF_DESTINATION_REQUEST: handoff_destination_request.handle,
    MessageType.KNOWLEDGE_BASE_REQUEST: knowledge_base_request.handle,
    MessageType.TRANSFER_UPDATE: transfer_update.handle,
    MessageType.PHONE_CALL_CONTROL: phone_call_control.handle,
    MessageType.LANGUAGE_CHANGE_DETECTED: language_change_detected.handle,
    MessageType.LANGUAGE_CHANGED: language_change_detected.handle,
    MessageType.VOICE_INPUT: voice_input.handle,
    MessageType.CALL_DELETED: call_deleted.handle,
    MessageType.CALL_DELETE_FAILED: call_delete_failed.handle,
    MessageType.CALL_ARTIFACT_UPLOAD: call_artifact_upload.handle,
    MessageType.SESSION_CREATED: session_created.handle,
    MessageType.SESSION_UPDATED: session_updated.handle,
    MessageType.SESSION_DELETED: session_deleted.handle,
    MessageType.CHAT_CREATED: chat_created.handle,
    MessageType.CHAT_DELETED: chat_deleted.handle,
    MessageType.API_CALL: api_call.handle,
}

__all__ = ["HANDLERS", "Context", "Handler"]
